cwlVersion: v1.2
class: Workflow
doc: A two-step workflow with the step names of StreamFlow's own examples (compile, execute).
inputs:
  source: File
outputs:
  result: {type: File, outputSource: execute/out}
steps:
  compile:
    run:
      class: CommandLineTool
      baseCommand: [cp]
      inputs: {src: {type: File, inputBinding: {position: 1}}}
      arguments: [{position: 2, valueFrom: program}]
      outputs: {binary: {type: File, outputBinding: {glob: program}}}
    in: {src: source}
    out: [binary]
  execute:
    run:
      class: CommandLineTool
      baseCommand: [cat]
      inputs: {binary: {type: File, inputBinding: {position: 1}}}
      stdout: out.txt
      outputs: {out: stdout}
    in: {binary: compile/binary}
    out: [out]
