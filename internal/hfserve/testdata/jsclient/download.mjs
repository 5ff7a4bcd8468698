// Downloads a repo from an HF endpoint with @huggingface/hub, the Hugging
// Face JavaScript client, exactly as an application would: model info,
// recursive listing (following Link pagination), paths-info, downloadFile
// for every file, then snapshotDownload into an HF-style cache.
//
// usage: node download.mjs HUB_URL REPO OUT_DIR CACHE_DIR RESULT_JSON
// The read token, if any, comes from HAL0_TEST_TOKEN.
import { downloadFile, listFiles, modelInfo, pathsInfo, snapshotDownload } from "@huggingface/hub";
import { createWriteStream } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

const [hubUrl, repo, outDir, cacheDir, resultFile] = process.argv.slice(2);
const creds = { hubUrl, accessToken: process.env.HAL0_TEST_TOKEN || undefined };

const info = await modelInfo({ name: repo, additionalFields: ["sha"], ...creds });

const listing = [];
for await (const e of listFiles({ repo, recursive: true, ...creds })) {
	listing.push(e);
}
const files = listing.filter((e) => e.type === "file");

const infos = await pathsInfo({ repo, paths: files.map((f) => f.path), revision: info.sha, ...creds });

for (const f of files) {
	const blob = await downloadFile({ repo, path: f.path, ...creds });
	if (!blob) {
		throw new Error(`downloadFile: ${f.path} does not exist`);
	}
	const dst = join(outDir, f.path);
	await mkdir(dirname(dst), { recursive: true });
	await pipeline(Readable.fromWeb(blob.stream()), createWriteStream(dst));
}

const missing = await downloadFile({ repo, path: "no/such/file.bin", ...creds });

const snapshot = await snapshotDownload({ repo, cacheDir, ...creds });

await writeFile(
	resultFile,
	JSON.stringify({ sha: info.sha, listing, pathsInfo: infos, missingIsNull: missing === null, snapshot }, null, 1),
);
