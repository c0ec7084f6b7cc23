cwlVersion: v1.2
class: CommandLineTool
doc: Fails unless the flag file exists; records each execution.
requirements:
  ShellCommandRequirement: {}
inputs:
  files: File[]
  counter: string
  flag: string
arguments:
  - {valueFrom: "echo run >> $(inputs.counter)/flaky && test -e $(inputs.flag) && cat", shellQuote: false}
  - {valueFrom: "$(inputs.files.map(function(f){return f.path}).join(' '))", shellQuote: false}
  - {valueFrom: "> all.txt", shellQuote: false}
outputs:
  all:
    type: File
    outputBinding: {glob: all.txt}
