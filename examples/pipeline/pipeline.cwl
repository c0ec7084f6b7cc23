#!/usr/bin/env cwl-runner
# Index CSV tables (outputs with secondary files), filter each table at every threshold
# (a nested cross-product scatter), summarise the row counts in JavaScript (records in and
# out), and bundle the indexed tables into a Directory.
cwlVersion: v1.2
class: Workflow
label: Tables through index, filter, summary and bundle

requirements:
  ScatterFeatureRequirement: {}
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}

inputs:
  samples: File[]
  thresholds: int[]
  config:
    type:
      type: record
      name: Config
      fields:
        label: string
        scale: int

outputs:
  tables:
    type: File[]
    outputSource: index/table
  kept:
    type:
      type: array
      items: {type: array, items: File}
    outputSource: filter/kept
  summary:
    type:
      type: record
      name: Summary
      fields:
        label: string
        total: int
        per_table: int[]
        best: string
        scaled: float
    outputSource: summarise/summary
  report:
    type: string
    outputSource: summarise/report
  bundle:
    type: Directory
    outputSource: make_bundle/bundle

steps:
  index:
    run: index.cwl
    scatter: sample
    in:
      sample: samples
    out: [table]

  filter:
    run: filter.cwl
    scatter: [table, threshold]
    scatterMethod: nested_crossproduct
    in:
      table: index/table
      threshold: thresholds
    out: [kept, rows]

  summarise:
    run:
      class: ExpressionTool
      inputs:
        rows:
          type: {type: array, items: {type: array, items: int}}
        names: string[]
        thresholds: int[]
        config:
          type:
            type: record
            name: C
            fields: {label: string, scale: int}
      outputs:
        summary:
          type:
            type: record
            name: S
            fields:
              label: string
              total: int
              per_table: int[]
              best: string
              scaled: float
        report: string
      expression: |
        ${
          var perTable = inputs.rows.map(function (counts) {
            return counts.reduce(function (a, b) { return a + b; }, 0);
          });
          var total = perTable.reduce(function (a, b) { return a + b; }, 0);
          var best = 0;
          for (var i = 1; i < perTable.length; i++) {
            if (perTable[i] > perTable[best]) { best = i; }
          }
          var lines = inputs.names.map(function (name, i) {
            var cells = inputs.rows[i].map(function (n, j) {
              return ">=" + inputs.thresholds[j] + ":" + n;
            });
            return name + " " + cells.join(",");
          });
          return {
            "summary": {
              "label": inputs.config.label.toUpperCase(),
              "total": total,
              "per_table": perTable,
              "best": inputs.names[best],
              "scaled": total * inputs.config.scale / 4.0
            },
            "report": lines.sort().join("; ")
          };
        }
    in:
      rows: filter/rows
      names:
        source: samples
        valueFrom: $(self.map(function (f) { return f.nameroot; }))
      thresholds: thresholds
      config: config
    out: [summary, report]

  make_bundle:
    run: bundle.cwl
    in:
      tables: index/table
    out: [bundle]
