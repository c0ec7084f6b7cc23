cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [wc, -l, -w]
stdin: $(inputs.text.path)
stdout: wc.txt
inputs:
  text: File
outputs:
  stats:
    type:
      type: record
      name: Stat
      fields:
        name: string
        lines: int
        words: int
    outputBinding:
      glob: wc.txt
      loadContents: true
      outputEval: |
        ${
          var parts = self[0].contents.trim().split(/\s+/);
          return {"name": inputs.text.basename, "lines": parseInt(parts[0]), "words": parseInt(parts[1])};
        }
