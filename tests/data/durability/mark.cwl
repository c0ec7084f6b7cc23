cwlVersion: v1.2
class: CommandLineTool
doc: Records each execution in a counter directory outside the job directory, then writes an output.
requirements:
  ShellCommandRequirement: {}
inputs:
  item: string
  counter: string
  delay: {type: float, default: 0.2}
arguments:
  - {valueFrom: "sleep $(inputs.delay) && echo run >> $(inputs.counter)/$(inputs.item) && echo $(inputs.item) > out.txt", shellQuote: false}
outputs:
  out:
    type: File
    outputBinding: {glob: out.txt}
