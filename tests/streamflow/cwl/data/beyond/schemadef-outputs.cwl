cwlVersion: v1.2
class: Workflow
doc: workflow outputs typed by SchemaDefRequirement types (issue 11, 3)
requirements:
  InlineJavascriptRequirement: {}
  SchemaDefRequirement:
    types:
      - {name: item, type: record, fields: [{name: prop, type: string}]}
      - {name: color, type: enum, symbols: [red, green]}
inputs: {msg: string}
steps:
  mk:
    run:
      class: ExpressionTool
      inputs: {msg: string}
      outputs:
        rec: item
        col: color
        many: {type: {type: array, items: item}}
      expression: '$({"rec": {"prop": inputs.msg}, "col": "green", "many": [{"prop": "a"}, {"prop": inputs.msg}]})'
    in: {msg: msg}
    out: [rec, col, many]
outputs:
  rec: {type: item, outputSource: mk/rec}
  col: {type: color, outputSource: mk/col}
  many: {type: {type: array, items: item}, outputSource: mk/many}
