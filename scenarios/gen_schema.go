//go:build ignore

// gen_schema writes scenarios/schema.json from the Go types; run it with
// "go generate ./scenarios". TestSchemaUpToDate fails when the file is stale.
package main

import (
	"log"
	"os"
	"path/filepath"

	_ "github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/scenarios"
)

func main() {
	b, err := scenarios.Schema()
	if err != nil {
		log.Fatal(err)
	}
	// go generate runs in the package's directory, scenarios/.
	if err := os.WriteFile(filepath.Join("..", scenarios.SchemaFile), b, 0o644); err != nil {
		log.Fatal(err)
	}
}
