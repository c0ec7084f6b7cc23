cwlVersion: v1.2
class: CommandLineTool
doc: Bundle the indexed tables and a manifest into one directory.
baseCommand: [sh, -c, 'mkdir bundle && for f in "$@"; do cp "$f" "$f.idx" bundle/; done && (cd bundle && ls) | sort > MANIFEST && mv MANIFEST bundle/', bundle]
inputs:
  tables:
    type: File[]
    secondaryFiles: [.idx]
    inputBinding: {position: 1}
outputs:
  bundle:
    type: Directory
    outputBinding: {glob: bundle}
