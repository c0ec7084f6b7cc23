cwlVersion: v1.2
class: Workflow
requirements:
  InlineJavascriptRequirement: {}
inputs:
  texts: File[]
  title: string
outputs:
  sorted:
    type: File
    outputSource: sort/sorted
steps:
  concat:
    run:
      class: CommandLineTool
      baseCommand: cat
      inputs:
        files:
          type: File[]
          inputBinding: {position: 1}
      stdout: all.txt
      outputs:
        all: {type: stdout}
    in:
      files: texts
    out: [all]
  sort:
    run:
      class: CommandLineTool
      requirements:
        ShellCommandRequirement: {}
      arguments:
        - {valueFrom: "echo", shellQuote: false}
        - $(inputs.title)
        - {valueFrom: "&& sort", shellQuote: false}
        - $(inputs.all.path)
      inputs:
        all: File
        title: string
      stdout: report.txt
      outputs:
        sorted: {type: stdout}
    in:
      all: concat/all
      title: title
    out: [sorted]
