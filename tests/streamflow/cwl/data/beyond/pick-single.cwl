cwlVersion: v1.2
class: Workflow
doc: pickValue on a single source (issue 11, 1)
requirements: {InlineJavascriptRequirement: {}}
inputs: {msg: string, go: boolean}
steps:
  echo: {run: echo-expr.cwl, in: {msg: msg, go: go}, when: $(inputs.go), out: [out]}
  again:
    run: echo-expr.cwl
    in:
      msg: {source: [echo/out], pickValue: first_non_null}
      go: {default: true}
    out: [out]
outputs:
  out1: {type: string?, outputSource: [echo/out], pickValue: first_non_null}
  out2: {type: string, outputSource: echo/out, pickValue: the_only_non_null}
  out4: {type: string, outputSource: again/out}
