cwlVersion: v1.0
class: CommandLineTool
doc: a hint from another namespace must not make loading look anything up (issue 11, 6)
$namespaces:
  acme: http://tools.acme.invalid/ns#
hints:
  acme:Telemetry: {level: 1}
baseCommand: echo
inputs:
  msg: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
stdout: out.txt
