cwlVersion: v1.2
class: Workflow
doc: produce writes a file; slow sleeps; consume needs both, so its inputs are staged after slow ends.
requirements:
  ShellCommandRequirement: {}
inputs:
  counter: string
  pause: {type: float, default: 3}
outputs:
  result:
    type: File
    outputSource: consume/out
steps:
  produce:
    run:
      class: CommandLineTool
      inputs:
        counter: string
      arguments:
        - {valueFrom: "echo run >> $(inputs.counter)/produce && echo data > data.txt", shellQuote: false}
      outputs:
        data: {type: File, outputBinding: {glob: data.txt}}
    in: {counter: counter}
    out: [data]
  slow:
    run:
      class: CommandLineTool
      inputs:
        pause: float
      arguments:
        - {valueFrom: "sleep $(inputs.pause) && echo done > slow.txt", shellQuote: false}
      outputs:
        done: {type: File, outputBinding: {glob: slow.txt}}
    in: {pause: pause}
    out: [done]
  consume:
    run:
      class: CommandLineTool
      inputs:
        data: File
        done: File
      arguments:
        - {valueFrom: "cat $(inputs.data.path) $(inputs.done.path) > out.txt", shellQuote: false}
      outputs:
        out: {type: File, outputBinding: {glob: out.txt}}
    in: {data: produce/data, done: slow/done}
    out: [out]
