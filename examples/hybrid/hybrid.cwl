#!/usr/bin/env cwl-runner
# One workflow over three sites (bindings in streamflow.yml): the text is split here,
# its chunks are counted on two SSH nodes (a scatter), the counts are summed by a Slurm
# job reached over SSH, and the report is written here again. Files move both ways.
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  text: File
  lines_per_chunk: {type: int, default: 4}
outputs:
  report:
    type: File
    outputSource: report/report
  counts:
    type: File[]
    outputSource: count/counted
steps:
  split:
    run: split.cwl
    in: {text: text, lines: lines_per_chunk}
    out: [chunks]
  count:
    run: count.cwl
    scatter: chunk
    in: {chunk: split/chunks}
    out: [counted]
  sum:
    run: sum.cwl
    in: {counts: count/counted}
    out: [total]
  report:
    run: report.cwl
    in: {text: text, total: sum/total, counts: count/counted}
    out: [report]
