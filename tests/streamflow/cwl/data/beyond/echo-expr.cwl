cwlVersion: v1.2
class: ExpressionTool
requirements: {InlineJavascriptRequirement: {}}
inputs: {msg: string, go: boolean}
outputs: {out: string}
expression: '$({"out": inputs.msg})'
