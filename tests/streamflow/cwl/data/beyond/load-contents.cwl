cwlVersion: v1.2
class: ExpressionTool
requirements: {InlineJavascriptRequirement: {}}
inputs:
  f: {type: File, inputBinding: {loadContents: true}}
outputs:
  text: string
expression: '$({"text": inputs.f.contents})'
