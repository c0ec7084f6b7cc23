cwlVersion: v1.2
class: Workflow
inputs:
  f: File
outputs:
  text: {type: string, outputSource: s/text}
steps:
  s: {run: load-contents.cwl, in: {f: f}, out: [text]}
