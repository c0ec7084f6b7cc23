#!/usr/bin/env cwl-runner
# A trivial tool: prints its input followed by a dot and returns what it printed.
cwlVersion: v1.2
class: CommandLineTool
doc: Print x followed by a dot; return the printed text as a string.
baseCommand: printf
arguments: ["%s.", $(inputs.x)]
inputs:
  x: string
stdout: out.txt
outputs:
  out:
    type: string
    outputBinding:
      glob: out.txt
      loadContents: true
      outputEval: $(self[0].contents)
