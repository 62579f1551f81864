// hf_server.mjs - a loopback HTTP server laid out like Hugging Face, for tests/integration/pull.sh.
//
// usage: node hf_server.mjs PORT_FILE DIR
// Serves DIR/OWNER/REPO/PATH as GET /OWNER/REPO/resolve/main/PATH the way huggingface.co does
// for LFS files: a 302 to a "CDN" URL (/cdn/OWNER/REPO/PATH) carrying X-Linked-Etag (the
// sha256) and X-Linked-Size; the CDN answers with ETag = the sha256, Accept-Ranges, and honours
// `Range: bytes=N-` (206 + Content-Range; 416 + `bytes */SIZE` past the end).
// Per-repository switches, files in DIR/OWNER/REPO:
//   .token    the repository is private: /resolve/ needs `Authorization: Bearer <content>` (401)
//   .drop     the first K CDN responses per file (K = the file's content, default 1) send the
//             headers and half of the body, then drop the connection
//   .badsha   the advertised sha256 is wrong
// Every request is appended to DIR/requests.log as one JSON line {method, url, range, auth}.
// The chosen port is written to PORT_FILE once listening.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, normalize } from 'node:path';

const [portFile, root] = process.argv.slice(2);
if (!portFile || !root) {
    console.error('usage: node hf_server.mjs PORT_FILE DIR');
    process.exit(2);
}
const drops = new Map(); // file -> CDN responses dropped so far
const shaCache = new Map();

function sha256(file) {
    if (!shaCache.has(file)) shaCache.set(file, createHash('sha256').update(readFileSync(file)).digest('hex'));
    return shaCache.get(file);
}

// DIR/OWNER/REPO and the file, or null when the name escapes DIR or does not exist.
function locate(owner, repo, path) {
    const repoDir = join(root, owner, repo);
    const file = normalize(join(repoDir, path));
    if (!file.startsWith(repoDir + '/')) return null;
    return { repoDir, file };
}

function switchFile(repoDir, name) {
    const p = join(repoDir, name);
    return existsSync(p) ? readFileSync(p, 'utf8').trim() : null;
}

function digestFor(repoDir, file) {
    return switchFile(repoDir, '.badsha') !== null ? '0'.repeat(64) : sha256(file);
}

const server = createServer((req, res) => {
    appendFileSync(join(root, 'requests.log'), JSON.stringify({
        method: req.method, url: req.url, range: req.headers.range || null,
        auth: req.headers.authorization || null,
    }) + '\n');
    const url = new URL(req.url, 'http://x');
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const fail = (code, msg) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: msg }));
    };
    if (parts.length >= 5 && parts[2] === 'resolve' && parts[3] === 'main') {
        const [owner, repo] = parts;
        const loc = locate(owner, repo, parts.slice(4).join('/'));
        if (!loc || !existsSync(join(root, owner, repo))) return fail(404, 'Repository not found');
        const token = switchFile(loc.repoDir, '.token');
        if (token !== null && req.headers.authorization !== `Bearer ${token}`)
            return fail(401, 'Invalid credentials in Authorization header');
        if (!existsSync(loc.file) || !statSync(loc.file).isFile()) return fail(404, 'Entry not found');
        res.writeHead(302, {
            location: `/cdn/${owner}/${repo}/${parts.slice(4).join('/')}`,
            'x-linked-etag': `"${digestFor(loc.repoDir, loc.file)}"`,
            'x-linked-size': String(statSync(loc.file).size),
            'content-length': '0',
        });
        return res.end();
    }
    if (parts.length >= 4 && parts[0] === 'cdn') {
        const loc = locate(parts[1], parts[2], parts.slice(3).join('/'));
        if (!loc || !existsSync(loc.file)) return fail(404, 'not found');
        const size = statSync(loc.file).size;
        const headers = { etag: `"${digestFor(loc.repoDir, loc.file)}"`, 'accept-ranges': 'bytes' };
        let start = 0;
        const m = /^bytes=(\d+)-$/.exec(req.headers.range || '');
        if (m) {
            start = Number(m[1]);
            if (start >= size) {
                res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
                return res.end();
            }
        }
        const body = readFileSync(loc.file).subarray(start);
        const code = m ? 206 : 200;
        if (m) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
        headers['content-length'] = String(body.length);
        const dropN = switchFile(loc.repoDir, '.drop');
        const dropped = drops.get(loc.file) || 0;
        if (dropN !== null && dropped < (Number(dropN) || 1)) {
            drops.set(loc.file, dropped + 1);
            res.writeHead(code, headers);
            res.flushHeaders();
            const half = Math.max(1, Math.floor(body.length / 2));
            res.write(body.subarray(0, half), () => setTimeout(() => res.socket.destroy(), 50));
            return;
        }
        res.writeHead(code, headers);
        return res.end(body);
    }
    fail(404, 'no such route');
});

server.listen(0, '127.0.0.1', () => {
    writeFileSync(portFile + '.tmp', String(server.address().port));
    // rename for atomicity: the test polls for the file
    import('node:fs').then(fs => fs.renameSync(portFile + '.tmp', portFile));
});
process.on('SIGTERM', () => process.exit(0));
