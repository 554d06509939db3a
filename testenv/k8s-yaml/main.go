// k8s-yaml reads a YAML stream on stdin and prints, as one JSON array, what
// Kubernetes' own decoder (sigs.k8s.io/yaml, the YAML-to-JSON step of kubectl
// and the API machinery) makes of each document. Documents are split on
// "---" lines as kubectl's YAML reader splits them. Empty documents are skipped.
// A document the decoder refuses ends the program with status 1 and the error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-yaml:", err)
		os.Exit(2)
	}
	var docs []json.RawMessage
	for _, doc := range split(data) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		out, err := yaml.YAMLToJSON(doc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "k8s-yaml:", err)
			os.Exit(1)
		}
		if string(out) == "null" {
			continue // a document of comments only
		}
		docs = append(docs, out)
	}
	if docs == nil {
		docs = []json.RawMessage{}
	}
	out, _ := json.Marshal(docs)
	os.Stdout.Write(append(out, '\n'))
}

// split cuts a stream at lines that are exactly "---" (kubectl's YAMLReader does the same).
func split(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 1<<20), 1<<30)
	for scanner.Scan() {
		line := scanner.Bytes()
		if string(bytes.TrimRight(line, " \t\r")) == "---" {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}
