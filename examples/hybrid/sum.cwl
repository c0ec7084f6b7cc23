cwlVersion: v1.2
class: CommandLineTool
doc: Sum the word counts (column 2 of every count file).
baseCommand: [awk, '{ s += $2 } END { print s }']
inputs:
  counts: {type: 'File[]', inputBinding: {position: 1}}
stdout: total.txt
outputs:
  total: stdout
