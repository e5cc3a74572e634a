// Validates Prometheus Operator resources against the CRDs' OpenAPI schemas, as compiled into
// @kubernetes-models/prometheus-operator (installed by .ci/test into .cache/tools/node).
//   node crd_validate.mjs NODE_MODULES_DIR < resources.json   (a JSON array of resources)
// Prints one line per resource; exits 1 when any is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const docs = JSON.parse(readFileSync(0, "utf8"));
let invalid = 0;
for (const doc of docs) {
  const [group, version] = doc.apiVersion.split("/");
  const file = join(modules, "@kubernetes-models/prometheus-operator", group, version, `${doc.kind}.js`);
  const name = `${doc.kind}/${doc.metadata.name}`;
  let model;
  try {
    model = (await import(pathToFileURL(file).href))[doc.kind];
  } catch (e) {
    invalid++;
    console.log(`invalid ${name}: no schema for ${doc.apiVersion} ${doc.kind} (${e.message})`);
    continue;
  }
  try {
    new model(doc).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    invalid++;
    console.log(`invalid ${name}: ${e.message}`);
  }
}
process.exit(invalid ? 1 : 0);
