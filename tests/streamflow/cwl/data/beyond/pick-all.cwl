cwlVersion: v1.2
class: Workflow
doc: all_non_null on a single source, skipped or not, and on a scattered conditional step
requirements: {InlineJavascriptRequirement: {}, ScatterFeatureRequirement: {}}
inputs: {msg: string, go: boolean, many: "string[]"}
steps:
  echo: {run: echo-expr.cwl, in: {msg: msg, go: go}, when: $(inputs.go), out: [out]}
  each:
    run: echo-expr.cwl
    scatter: msg
    in: {msg: many, go: {valueFrom: '$(inputs.msg != "skip")'}}
    when: $(inputs.go)
    out: [out]
outputs:
  all: {type: "string[]", outputSource: echo/out, pickValue: all_non_null}
  kept: {type: "string[]", outputSource: each/out, pickValue: all_non_null}
