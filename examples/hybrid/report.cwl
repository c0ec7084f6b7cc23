cwlVersion: v1.2
class: CommandLineTool
doc: Write the report from the total and the per-chunk counts.
requirements:
  ShellCommandRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  text: File
  total: File
  counts: File[]
arguments:
  - shellQuote: false
    valueFrom: >-
      { echo "text: $(inputs.text.basename)"; echo "words: `cat $(inputs.total.path)`";
      cat $(inputs.counts.map(function(f) { return f.path; }).join(' ')) | cut -d' ' -f1,2; } > report.txt
outputs:
  report:
    type: File
    outputBinding: {glob: report.txt}
