//go:build ignore

// gen_schema writes scenarios/schema.json from the Go types; run it with
// "go generate ./runner". TestSchemaUpToDate fails when the file is stale.
package main

import (
	"log"
	"os"
	"path/filepath"

	"github.com/labrun/labrun/runner"
)

func main() {
	b, err := runner.Schema()
	if err != nil {
		log.Fatal(err)
	}
	// go generate runs in the package's directory, runner/.
	if err := os.WriteFile(filepath.Join("..", runner.SchemaFile), b, 0o644); err != nil {
		log.Fatal(err)
	}
}
