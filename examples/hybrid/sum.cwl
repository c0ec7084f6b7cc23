cwlVersion: v1.2
class: CommandLineTool
doc: Sum the word counts (column 2 of every count file).
requirements:
  ShellCommandRequirement: {}
inputs:
  counts: {type: 'File[]', inputBinding: {position: 2}}
arguments:
  - {position: 1, shellQuote: false, valueFrom: "awk '{ s += $2 } END { print s }'"}
  - {position: 3, shellQuote: false, valueFrom: "> total.txt"}
outputs:
  total:
    type: File
    outputBinding: {glob: total.txt}
