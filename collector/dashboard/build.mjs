// Builds the page into dist/: the bundled script and stylesheet under content-hashed names, the
// HTML shell naming them, a gzip form of each (level 9, no timestamp), and dist/assets.rs, the
// list the collector embeds (collector/src/dashboard.rs). The output depends only on the sources
// and the pinned tool versions, so CI can rebuild it and compare it with what is committed.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");

const result = await esbuild.build({
  entryPoints: [join(here, "src/main.tsx")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "app-[hash]",
  outdir: join(dist, "assets"),
  legalComments: "eof",
  charset: "utf8",
  write: false,
  logLevel: "warning",
});

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "assets"), { recursive: true });

const files = [];
for (const out of result.outputFiles) {
  const name = basename(out.path);
  const type = name.endsWith(".js")
    ? "text/javascript; charset=utf-8"
    : "text/css; charset=utf-8";
  files.push({ name, type, rel: `assets/${name}`, body: Buffer.from(out.contents) });
}
files.sort((a, b) => a.name.localeCompare(b.name));
const script = files.find((f) => f.name.endsWith(".js"));
const style = files.find((f) => f.name.endsWith(".css"));
if (!script || !style) throw new Error("esbuild produced no script or no stylesheet");

const template = readFileSync(join(here, "src/index.html"), "utf8");
const html = template
  .replace("%SCRIPT%", `/assets/${script.name}`)
  .replace("%STYLE%", `/assets/${style.name}`);
const index = {
  name: "index.html",
  type: "text/html; charset=utf-8",
  rel: "index.html",
  body: Buffer.from(html, "utf8"),
};

const etag = (body) => `"${createHash("sha256").update(body).digest("hex").slice(0, 32)}"`;
const rust = (f) => {
  const path = (rel) => `concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/${rel}")`;
  return `Asset {
    name: ${JSON.stringify(f.name)},
    content_type: ${JSON.stringify(f.type)},
    etag: ${JSON.stringify(etag(f.body))},
    body: include_bytes!(${path(f.rel)}),
    gzip: include_bytes!(${path(f.rel + ".gz")}),
}`;
};

for (const f of [index, ...files]) {
  writeFileSync(join(dist, f.rel), f.body);
  writeFileSync(join(dist, f.rel + ".gz"), gzipSync(f.body, { level: 9 }));
}
writeFileSync(
  join(dist, "assets.rs"),
  `// Written by collector/dashboard/build.mjs (\`npm run build\`): do not edit.

/// The HTML shell of the page.
pub const INDEX: Asset = ${rust(index)};

/// The page's script and stylesheet, by content-hashed name.
pub const ASSETS: &[Asset] = &[
${files.map((f) => rust(f).replace(/^/gm, "    ")).join(",\n")},
];
`,
);
for (const f of [index, ...files]) {
  const gz = readFileSync(join(dist, f.rel + ".gz")).length;
  console.log(`dist/${f.rel}  ${f.body.length} B, gzip ${gz} B`);
}
