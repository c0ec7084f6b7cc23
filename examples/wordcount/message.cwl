cwlVersion: v1.2
class: ExpressionTool
requirements:
  InlineJavascriptRequirement: {}
inputs:
  total: int
  threshold: int
  text: string
outputs:
  message: string
expression: '${ return {"message": inputs.text + " (" + inputs.total + " lines)"}; }'
