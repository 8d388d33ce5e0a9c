// Signs in to a running Myelin server through its OAuth 2.0 API with
// matrix-js-sdk's OIDC helpers, as Element Web does: discover the
// metadata, register a client, build the authorisation URL, complete the
// code grant, refresh the token, and revoke it.
//
// usage: node oauth.mjs HOMESERVER_URL
//
// The browser part is not here: the script prints one line
//   AUTHORIZE <url>
// and waits for the browser (driven by the Go test with headless Chromium)
// to come back to its loopback redirect URI. Prints each step; exits
// non-zero at the first failure.

import { createServer } from "node:http";
import { randomBytes } from "node:crypto";

import {
    createClient,
    discoverAndValidateOIDCIssuerWellKnown,
    registerOidcClient,
    generateOidcAuthorizationUrl,
    completeAuthorizationCodeGrant,
    OidcTokenRefresher,
    MatrixError,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

const hs = process.argv[2];
if (!hs) {
    console.error("usage: node oauth.mjs HOMESERVER_URL");
    process.exit(2);
}

function step(name, detail = "") {
    console.log(`ok   ${name}${detail ? ": " + detail : ""}`);
}

function fail(msg) {
    console.error(`FAIL ${msg}`);
    process.exit(1);
}

// The helpers are written for a browser: they keep their state in
// window.sessionStorage (oidc-client-ts defaults to localStorage) and
// read window.location.origin.
class MemoryStorage {
    #m = new Map();
    get length() { return this.#m.size; }
    key(i) { return [...this.#m.keys()][i] ?? null; }
    getItem(k) { return this.#m.has(k) ? this.#m.get(k) : null; }
    setItem(k, v) { this.#m.set(k, String(v)); }
    removeItem(k) { this.#m.delete(k); }
    clear() { this.#m.clear(); }
}

// The loopback redirect URI (RFC 8252): registered without a port, used
// with the port this server got.
let resolveCallback;
const callback = new Promise((r) => { resolveCallback = r; });
const server = createServer((req, res) => {
    const u = new URL(req.url, "http://127.0.0.1");
    if (u.pathname !== "/callback") {
        res.writeHead(404).end();
        return;
    }
    res.writeHead(200, { "Content-Type": "text/html" }).end("<p id=done>Signed in. You can close this window.</p>");
    resolveCallback(u.searchParams);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const redirectUri = `http://127.0.0.1:${server.address().port}/callback`;
globalThis.sessionStorage = new MemoryStorage();
globalThis.localStorage = new MemoryStorage();
globalThis.window = {
    sessionStorage: globalThis.sessionStorage,
    localStorage: globalThis.localStorage,
    location: { origin: `http://127.0.0.1:${server.address().port}` },
};

try {
    const client = createClient({ baseUrl: hs });
    const metadata = await client.getAuthMetadata();
    if (!metadata.signingKeys?.length) fail("no signing keys from jwks_uri");
    step("getAuthMetadata", `issuer ${metadata.issuer}, ${metadata.signingKeys.length} signing key(s)`);
    const oidc = await discoverAndValidateOIDCIssuerWellKnown(metadata.issuer);
    if (oidc.token_endpoint !== metadata.token_endpoint) fail("discovery and auth_metadata disagree");
    step("discoverAndValidateOIDCIssuerWellKnown", oidc.issuer);

    const clientId = await registerOidcClient(metadata, {
        clientName: "js-sdk test client",
        clientUri: "https://js-sdk.example.org/",
        applicationType: "native",
        redirectUris: ["http://127.0.0.1/callback"],
        contacts: ["admin@js-sdk.example.org"],
        tosUri: "https://js-sdk.example.org/tos",
        policyUri: "https://js-sdk.example.org/policy",
    });
    step("registerOidcClient", clientId);

    const nonce = randomBytes(8).toString("hex");
    const url = await generateOidcAuthorizationUrl({ metadata, redirectUri, clientId, homeserverUrl: hs, nonce });
    if (!url.includes("code_challenge_method=S256")) fail("authorisation URL without S256 PKCE: " + url);
    step("generateOidcAuthorizationUrl");
    console.log(`AUTHORIZE ${url}`);

    const params = await Promise.race([
        callback,
        new Promise((_, rej) => setTimeout(() => rej(new Error("no callback within 60 s")), 60000)),
    ]);
    if (params.get("error")) fail(`authorisation failed: ${params.get("error")} ${params.get("error_description")}`);
    const grant = await completeAuthorizationCodeGrant(params.get("code"), params.get("state"));
    const tokens = grant.tokenResponse;
    if (!tokens.access_token || !tokens.refresh_token || grant.idTokenClaims.sub === undefined) fail("token response " + JSON.stringify(tokens));
    step("completeAuthorizationCodeGrant", `sub ${grant.idTokenClaims.sub}, scope ${tokens.scope}`);

    const user = createClient({ baseUrl: hs, accessToken: tokens.access_token });
    const who = await user.whoami();
    if (who.user_id !== grant.idTokenClaims.sub || !who.device_id) fail("whoami " + JSON.stringify(who));
    if (!tokens.scope.includes(`device:${who.device_id}`)) fail(`scope ${tokens.scope} does not name device ${who.device_id}`);
    step("whoami", `${who.user_id} ${who.device_id}`);
    const { devices } = await user.getDevices();
    const mine = devices.find((d) => d.device_id === who.device_id);
    if (!mine) fail("the OAuth device is not in /devices");
    step("getDevices", `${devices.length} device(s), this one named "${mine.display_name}"`);

    const refresher = new OidcTokenRefresher(metadata.issuer, clientId, redirectUri, who.device_id, grant.idTokenClaims);
    await refresher.oidcClientReady;
    const fresh = await refresher.doRefreshAccessToken(tokens.refresh_token);
    if (!fresh.accessToken || fresh.accessToken === tokens.access_token || !fresh.refreshToken) fail("refresh " + JSON.stringify(fresh));
    const again = await createClient({ baseUrl: hs, accessToken: fresh.accessToken }).whoami();
    if (again.device_id !== who.device_id) fail("refreshed token is of another device");
    step("OidcTokenRefresher.doRefreshAccessToken", "new token works, same device");

    const rev = await fetch(metadata.revocation_endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: fresh.accessToken, token_type_hint: "access_token", client_id: clientId }),
    });
    if (rev.status !== 200) fail(`revocation answered ${rev.status}`);
    try {
        await createClient({ baseUrl: hs, accessToken: fresh.accessToken }).whoami();
        fail("a revoked token still works");
    } catch (e) {
        if (!(e instanceof MatrixError) || e.httpStatus !== 401 || e.errcode !== "M_UNKNOWN_TOKEN") throw e;
    }
    step("revocation", "the device is logged out (401 M_UNKNOWN_TOKEN)");
    console.log("PASS");
    // The callback server's keep-alive connection and the SDK's timers
    // would keep node running.
    process.exit(0);
} catch (e) {
    fail(e?.stack ?? String(e));
}
