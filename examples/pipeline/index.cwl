cwlVersion: v1.2
class: CommandLineTool
doc: Convert a CSV table to TSV and write a row-count index next to it (a secondary file).
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c, 'tr "," "\t" < "$0" > "$1" && wc -l < "$1" | tr -d " " > "$1.idx"']
inputs:
  sample:
    type: File
    inputBinding: {position: 1}
arguments:
  - position: 2
    valueFrom: $(inputs.sample.nameroot).tsv
outputs:
  table:
    type: File
    secondaryFiles: [.idx]
    outputBinding:
      glob: $(inputs.sample.nameroot).tsv
