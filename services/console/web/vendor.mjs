// Copies the chart library from node_modules into ../static (committed: the hub serves it, no npm at run time).
// Refresh: cd services/console/web && npm ci --ignore-scripts && npm run vendor
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";

const here = new URL(".", import.meta.url);
const out = new URL("../static/", here);
const pkg = (name) => JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, here), "utf8"));

copyFileSync(new URL("node_modules/chart.js/dist/chart.umd.min.js", here), new URL("chart.umd.min.js", out));
const chart = pkg("chart.js");
const color = pkg("@kurkle/color");
const licence = (name) => readFileSync(new URL(`node_modules/${name}/LICENSE.md`, here), "utf8").trim();
writeFileSync(
  new URL("chart.LICENSE.txt", out),
  [
    `chart.umd.min.js: Chart.js ${chart.version} (${chart.license}), from the npm registry,`,
    `bundling @kurkle/color ${color.version} (${color.license}). Refreshed by services/console/web/vendor.mjs.`,
    "",
    `==== chart.js ${chart.version}`,
    licence("chart.js"),
    "",
    `==== @kurkle/color ${color.version}`,
    licence("@kurkle/color"),
    "",
  ].join("\n"),
);
console.log(`vendored chart.js ${chart.version} (@kurkle/color ${color.version}) into ${out.pathname}`);
