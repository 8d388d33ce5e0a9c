// Browser entry: signs in to Myelin through its OAuth 2.0 API with
// matrix-js-sdk's OIDC helpers running in the page, as Element Web does.
// Bundled with esbuild (`npm run --silent build:oidc -- --outfile=X`) and
// served by the Go test (clients_oauth_test.go) as a tiny web client at
// https://127.0.0.1:PORT/, whose origin is the registered client_uri and
// whose URL is the registered redirect URI.
//
// The page runs in two visits:
//  1. no ?code: fetch the auth metadata, discover the issuer, register a
//     web client, build the authorisation URL and go there (the Go test
//     signs in and clicks Allow on Myelin's pages);
//  2. back with ?code=&state=: complete the code grant, call whoami and
//     /devices with the token, refresh it with OidcTokenRefresher, revoke
//     it as Element Web does (oidc-client-ts' revokeToken) and check that
//     whoami then answers 401 M_UNKNOWN_TOKEN.
// Each step is reported as JSON in <pre id=result> ({"done", "pass",
// "steps", "error"}); the steps of the first visit are carried over in
// sessionStorage.

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
import { OidcClient } from "oidc-client-ts";

logger.setLevel("error");

const STEPS = "myelin-test-steps";
const CLIENT = "myelin-test-client";

const hs = document.querySelector("meta[name=homeserver]").content;
// The registered redirect URI is the page itself, without a query.
const redirectUri = window.location.origin + "/";
const steps = JSON.parse(sessionStorage.getItem(STEPS) ?? "[]");

function report(extra) {
    const out = document.getElementById("result");
    out.textContent = JSON.stringify({ steps, ...extra }, null, 1);
    if (extra.done) out.dataset.done = "1";
}

function step(name, detail = "") {
    steps.push({ name, detail });
    sessionStorage.setItem(STEPS, JSON.stringify(steps));
    report({ done: false });
}

class Failure extends Error {}
function fail(msg) {
    throw new Failure(msg);
}

async function start() {
    const client = createClient({ baseUrl: hs });
    const metadata = await client.getAuthMetadata();
    if (!metadata.signingKeys?.length) fail("no signing keys from jwks_uri");
    step("getAuthMetadata", `issuer ${metadata.issuer}, ${metadata.signingKeys.length} signing key(s)`);
    const oidc = await discoverAndValidateOIDCIssuerWellKnown(metadata.issuer);
    if (oidc.token_endpoint !== metadata.token_endpoint) fail("discovery and auth_metadata disagree");
    step("discoverAndValidateOIDCIssuerWellKnown", oidc.issuer);

    const clientId = await registerOidcClient(metadata, {
        clientName: "js-sdk web client",
        clientUri: redirectUri,
        applicationType: "web",
        redirectUris: [redirectUri],
        contacts: ["admin@example.org"],
        tosUri: redirectUri + "tos",
        policyUri: redirectUri + "policy",
    });
    step("registerOidcClient", `${clientId} (web, client_uri ${redirectUri})`);
    sessionStorage.setItem(CLIENT, JSON.stringify({ clientId, issuer: metadata.issuer }));

    const nonce = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
    const url = await generateOidcAuthorizationUrl({ metadata, redirectUri, clientId, homeserverUrl: hs, nonce });
    if (!url.includes("code_challenge_method=S256")) fail("authorisation URL without S256 PKCE: " + url);
    if (!url.startsWith(metadata.authorization_endpoint)) fail("authorisation URL not at the authorization_endpoint: " + url);
    step("generateOidcAuthorizationUrl", "navigating to the authorization_endpoint");
    window.location.assign(url);
}

async function finish(params) {
    if (params.get("error")) fail(`authorisation failed: ${params.get("error")} ${params.get("error_description")}`);
    const { clientId, issuer } = JSON.parse(sessionStorage.getItem(CLIENT) ?? "{}");
    if (!clientId) fail("came back without a registered client in sessionStorage");
    step("redirect back", `code and state on ${window.location.origin}`);

    const grant = await completeAuthorizationCodeGrant(params.get("code"), params.get("state"));
    const tokens = grant.tokenResponse;
    if (!tokens.access_token || !tokens.refresh_token || grant.idTokenClaims.sub === undefined) {
        fail("token response " + JSON.stringify(tokens));
    }
    if (grant.oidcClientSettings.clientId !== clientId || grant.oidcClientSettings.issuer !== issuer || grant.homeserverUrl !== hs) {
        fail(`grant of ${JSON.stringify(grant.oidcClientSettings)} for ${grant.homeserverUrl}`);
    }
    step("completeAuthorizationCodeGrant", `sub ${grant.idTokenClaims.sub}, scope ${tokens.scope}`);

    const user = createClient({ baseUrl: hs, accessToken: tokens.access_token });
    const who = await user.whoami();
    if (who.user_id !== grant.idTokenClaims.sub || !who.device_id) fail("whoami " + JSON.stringify(who));
    // matrix-js-sdk 37 still asks for MSC2967's unstable scopes.
    const deviceScopes = [`urn:matrix:client:device:${who.device_id}`, `urn:matrix:org.matrix.msc2967.client:device:${who.device_id}`];
    if (!tokens.scope.split(" ").some((sc) => deviceScopes.includes(sc))) {
        fail(`scope ${tokens.scope} does not name device ${who.device_id}`);
    }
    step("whoami", `${who.user_id} ${who.device_id}`);
    const { devices } = await user.getDevices();
    const mine = devices.find((d) => d.device_id === who.device_id);
    if (!mine) fail("the OAuth device is not in /devices");
    step("getDevices", `${devices.length} device(s), this one named "${mine.display_name}"`);

    const refresher = new OidcTokenRefresher(issuer, clientId, redirectUri, who.device_id, grant.idTokenClaims);
    await refresher.oidcClientReady;
    const fresh = await refresher.doRefreshAccessToken(tokens.refresh_token);
    if (!fresh.accessToken || fresh.accessToken === tokens.access_token || !fresh.refreshToken) {
        fail("refresh " + JSON.stringify(fresh));
    }
    const again = await createClient({ baseUrl: hs, accessToken: fresh.accessToken }).whoami();
    if (again.device_id !== who.device_id) fail("the refreshed token is of another device");
    step("OidcTokenRefresher.doRefreshAccessToken", "the new token works, same device");

    // As Element Web's OidcClientStore.revokeTokens: oidc-client-ts'
    // OidcClient, configured from the auth metadata, revokes the access
    // token and then the refresh token at the revocation_endpoint.
    const oidcClient = new OidcClient({
        authority: issuer,
        metadata: await discoverAndValidateOIDCIssuerWellKnown(issuer),
        client_id: clientId,
        redirect_uri: redirectUri,
    });
    await oidcClient.revokeToken(fresh.accessToken, "access_token");
    await oidcClient.revokeToken(fresh.refreshToken, "refresh_token");
    try {
        await createClient({ baseUrl: hs, accessToken: fresh.accessToken }).whoami();
        fail("a revoked token still works");
    } catch (e) {
        if (!(e instanceof MatrixError) || e.httpStatus !== 401 || e.errcode !== "M_UNKNOWN_TOKEN") throw e;
    }
    step("OidcClient.revokeToken", "the device is logged out (401 M_UNKNOWN_TOKEN)");
    return { userId: who.user_id, deviceId: who.device_id, scope: tokens.scope };
}

async function main() {
    const params = new URLSearchParams(window.location.search);
    try {
        if (!params.has("code") && !params.has("error")) {
            sessionStorage.removeItem(STEPS);
            steps.length = 0;
            await start();
            return;
        }
        const info = await finish(params);
        report({ done: true, pass: true, ...info });
    } catch (e) {
        const error = e instanceof Failure ? e.message : `${e?.name}: ${e?.message}\n${e?.stack ?? ""}`;
        report({ done: true, pass: false, error });
    }
}

main();
