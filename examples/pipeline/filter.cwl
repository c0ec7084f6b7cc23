cwlVersion: v1.2
class: CommandLineTool
doc: Keep the rows whose value reaches a threshold; needs the table's index.
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c, 'test -s "$0.idx" && awk -F "\t" -v t="$1" "\$2 >= t" "$0" > "$2"']
inputs:
  table:
    type: File
    secondaryFiles: [.idx]
    inputBinding: {position: 1}
  threshold:
    type: int
    inputBinding: {position: 2}
arguments:
  - position: 3
    valueFrom: $(inputs.table.nameroot)-ge$(inputs.threshold).tsv
outputs:
  kept:
    type: File
    outputBinding:
      glob: $(inputs.table.nameroot)-ge$(inputs.threshold).tsv
  rows:
    type: int
    outputBinding:
      glob: $(inputs.table.nameroot)-ge$(inputs.threshold).tsv
      loadContents: true
      outputEval: |
        ${
          return self[0].contents.split("\n").filter(function (line) { return line.length > 0; }).length;
        }
