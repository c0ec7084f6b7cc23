cwlVersion: v1.2
class: CommandLineTool
doc: Count the words of a chunk; say where it ran.
requirements:
  ShellCommandRequirement: {}
  ResourceRequirement: {coresMin: 2}
inputs:
  chunk: File
arguments:
  - shellQuote: false
    valueFrom: >-
      echo "$(inputs.chunk.basename)" `wc -w < $(inputs.chunk.path)` `hostname` > $(inputs.chunk.basename).count
outputs:
  counted:
    type: File
    outputBinding: {glob: $(inputs.chunk.basename).count}
