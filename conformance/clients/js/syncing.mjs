// Helpers shared by the scripts that run matrix-js-sdk's own sync loop
// (startClient) with Rust crypto against a running Myelin server: sas.mjs
// and olm_federation.mjs.

import { ClientEvent, createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

export class FlowError extends Error {}

export function step(name, detail = "") {
    console.log(`ok   ${name}${detail ? ": " + detail : ""}`);
}

export function check(cond, msg) {
    if (!cond) throw new FlowError(msg);
}

// api makes one client-server request with fetch, outside the SDK.
export async function api(hs, method, path, token, body) {
    const res = await fetch(hs + "/_matrix/client/v3" + path, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : {} };
}

// waitFor polls fn until it returns a truthy value, which it returns.
export async function waitFor(what, fn, ms = 30000) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new FlowError(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

// within rejects when p does not settle within ms.
export function within(what, p, ms = 30000) {
    let timer;
    return Promise.race([
        p.finally(() => clearTimeout(timer)),
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new FlowError(`timed out waiting for ${what}`)), ms);
        }),
    ]);
}

// Myelin serves the device half of the client API and holds no rooms, so
// it serves neither push rules nor filter uploads (they are outside its
// spec slice), yet the SDK's sync loop fetches the one and uploads the
// other before its first /sync. These two requests, and only these, are
// answered here as a server with no rooms would; everything else goes to
// the server. Each client counts the /sync requests it sent.
const notServed = [
    { method: "GET", re: /\/_matrix\/client\/v3\/pushrules\/$/, body: { global: {} } },
    { method: "POST", re: /\/_matrix\/client\/v3\/user\/[^/]+\/filter$/, body: { filter_id: "0" } },
];

function fetchFor(counter) {
    return async (input, init = {}) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        const method = (init.method ?? "GET").toUpperCase();
        for (const n of notServed) {
            if (n.method === method && n.re.test(url.pathname)) {
                return new Response(JSON.stringify(n.body), { status: 200, headers: { "Content-Type": "application/json" } });
            }
        }
        if (url.pathname === "/_matrix/client/v3/sync") counter.syncs++;
        return fetch(input, init);
    };
}

// syncingClient makes a client with Rust crypto (in memory) for creds on
// hs and starts its sync loop; it resolves once the first /sync is
// processed. The client's syncCount() says how many /sync requests it sent.
export async function syncingClient(hs, creds, opts = {}) {
    const counter = { syncs: 0 };
    const mx = createClient({ baseUrl: hs, ...creds, fetchFn: fetchFor(counter), ...opts });
    mx.syncCount = () => counter.syncs;
    await mx.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                mx.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                mx.off(ClientEvent.Sync, onSync);
                reject(new FlowError(`first /sync failed: ${data?.error ?? state}`));
            }
        };
        mx.on(ClientEvent.Sync, onSync);
    });
    await mx.startClient({ initialSyncLimit: 1 });
    await within(`${creds.deviceId}'s first sync`, prepared);
    return mx;
}

// run runs main and exits 0, or prints the failure and exits 1.
export function run(main) {
    main().then(
        () => process.exit(0),
        (e) => {
            console.error(`FAIL ${e instanceof FlowError ? e.message : e.stack ?? e}`);
            process.exit(1);
        },
    );
}
