cwlVersion: v1.2
class: Workflow
doc: a scatter over a tool writing files, then a merge with cat
requirements: {ScatterFeatureRequirement: {}}
inputs: {words: "string[]"}
steps:
  say:
    run:
      class: CommandLineTool
      baseCommand: echo
      stdout: $(inputs.w).txt
      inputs: {w: {type: string, inputBinding: {position: 1}}}
      outputs: {out: stdout}
    scatter: w
    in: {w: words}
    out: [out]
  join:
    run:
      class: CommandLineTool
      baseCommand: cat
      stdout: all.txt
      inputs: {files: {type: "File[]", inputBinding: {position: 1}}}
      outputs: {out: stdout}
    in: {files: say/out}
    out: [out]
outputs:
  each: {type: "File[]", outputSource: say/out}
  all: {type: File, outputSource: join/out}
