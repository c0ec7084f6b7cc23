cwlVersion: v1.2
class: CommandLineTool
doc: Split a text file into chunks of a few lines each (chunk_aa, chunk_ab...).
baseCommand: [split, -l]
inputs:
  lines: {type: int, inputBinding: {position: 1}}
  text: {type: File, inputBinding: {position: 2}}
arguments: [{position: 3, valueFrom: chunk_}]
outputs:
  chunks:
    type: File[]
    outputBinding:
      glob: chunk_*
      outputEval: '$(self.sort(function(a, b) { return a.basename < b.basename ? -1 : 1; }))'
requirements:
  InlineJavascriptRequirement: {}
