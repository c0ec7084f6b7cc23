#!/usr/bin/env cwl-runner
# Count the lines of several text files in parallel (scatter), summarise the counts with
# a JavaScript expression tool, build a sorted report in a subworkflow, and flag the
# corpus as "large" only when a condition holds (a conditional step with pickValue).
cwlVersion: v1.2
class: Workflow
label: Word and line counts over a set of text files

requirements:
  ScatterFeatureRequirement: {}
  SubworkflowFeatureRequirement: {}
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}
  MultipleInputFeatureRequirement: {}

inputs:
  texts: File[]
  threshold:
    type: int
    default: 10
  title:
    type: string
    default: corpus

outputs:
  counts:
    type:
      type: array
      items:
        type: record
        name: Count
        fields:
          name: string
          lines: int
          words: int
    outputSource: count/stats
  total_lines:
    type: int
    outputSource: summarise/total_lines
  report:
    type: File
    outputSource: make_report/sorted
  verdict:
    type: string
    outputSource: [flag_large/message, flag_small/message]
    pickValue: the_only_non_null

steps:
  count:
    run: count.cwl
    scatter: text
    in:
      text: texts
    out: [stats]

  summarise:
    run:
      class: ExpressionTool
      inputs:
        stats:
          type:
            type: array
            items: {type: record, name: S, fields: {name: string, lines: int, words: int}}
      outputs:
        total_lines: int
        total_words: int
      expression: |
        ${
          var lines = 0, words = 0;
          for (var i = 0; i < inputs.stats.length; i++) {
            lines += inputs.stats[i].lines;
            words += inputs.stats[i].words;
          }
          return {"total_lines": lines, "total_words": words};
        }
    in:
      stats: count/stats
    out: [total_lines, total_words]

  make_report:
    run: report.cwl
    in:
      texts: texts
      title:
        source: title
        valueFrom: $(self.toUpperCase())
    out: [sorted]

  flag_large:
    run: message.cwl
    when: $(inputs.total > inputs.threshold)
    in:
      total: summarise/total_lines
      threshold: threshold
      text:
        valueFrom: "large corpus"
    out: [message]

  flag_small:
    run: message.cwl
    when: $(inputs.total <= inputs.threshold)
    in:
      total: summarise/total_lines
      threshold: threshold
      text:
        valueFrom: "small corpus"
    out: [message]
