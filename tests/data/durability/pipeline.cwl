cwlVersion: v1.2
class: Workflow
doc: A scatter of side-effect-counting jobs followed by a gathering job that fails without a flag file.
requirements:
  ScatterFeatureRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  items: string[]
  counter: string
  flag: string
  delay: {type: float, default: 0.2}
outputs:
  all:
    type: File
    outputSource: combine/all
steps:
  mark:
    run: mark.cwl
    scatter: item
    in:
      item: items
      counter: counter
      delay: delay
    out: [out]
  combine:
    run: flaky.cwl
    in:
      files: mark/out
      counter: counter
      flag: flag
    out: [all]
