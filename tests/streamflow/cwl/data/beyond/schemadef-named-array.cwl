cwlVersion: v1.2
class: Workflow
doc: a named array type on a workflow output (cwltool rejects it; StreamFlow checks it)
requirements:
  InlineJavascriptRequirement: {}
  SchemaDefRequirement:
    types:
      - {name: names, type: array, items: string}
inputs: {msg: string}
steps:
  mk:
    run:
      class: ExpressionTool
      inputs: {msg: string}
      outputs: {lst: names}
      expression: '$({"lst": [inputs.msg, inputs.msg]})'
    in: {msg: msg}
    out: [lst]
outputs:
  lst: {type: names, outputSource: mk/lst}
