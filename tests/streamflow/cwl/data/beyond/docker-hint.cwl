cwlVersion: v1.2
class: CommandLineTool
doc: a DockerRequirement given as a hint only
hints:
  DockerRequirement: {dockerPull: "localhost:9/streamflow-test/missing:1"}
baseCommand: echo
arguments: [ran]
inputs: []
outputs: {out: stdout}
stdout: out.txt
