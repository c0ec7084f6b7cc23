#!/usr/bin/env cwl-runner
# A scatter of the trivial tool over a string array (the job document sets its length).
cwlVersion: v1.2
class: Workflow
doc: Scatter echo.cwl over every item of an array.
requirements:
  ScatterFeatureRequirement: {}
inputs:
  items: string[]
outputs:
  out:
    type: string[]
    outputSource: echo/out
steps:
  echo:
    run: echo.cwl
    scatter: x
    in:
      x: items
    out: [out]
