cwlVersion: v1.2
class: CommandLineTool
doc: a DockerRequirement required
requirements:
  DockerRequirement: {dockerPull: "localhost:9/streamflow-test/missing:1"}
baseCommand: echo
arguments: [ran]
inputs: []
outputs: {out: stdout}
stdout: out.txt
