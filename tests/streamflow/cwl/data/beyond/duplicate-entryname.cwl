cwlVersion: v1.2
class: CommandLineTool
requirements:
  InitialWorkDirRequirement:
    listing:
      - {entryname: conf.txt, entry: "first"}
      - {entryname: conf.txt, entry: "second"}
baseCommand: cat
arguments: [conf.txt]
inputs: []
outputs: {out: stdout}
