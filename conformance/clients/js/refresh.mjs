// Drives a running Myelin server through refresh tokens with matrix-js-sdk,
// as Element does with refresh tokens on: login with refresh_token: true,
// a tokenRefreshFunction that the SDK calls when the server says the
// access token is unknown (soft logout), three forced expiries, and a
// thief replaying an old refresh token, after which the client is logged
// out. Also checks /capabilities as the SDK reads it.
//
// usage: node refresh.mjs HOMESERVER_URL LIFETIME_MS
// (the server runs with --access-token-lifetime LIFETIME_MS, open
// registration and --get-login-token)

import { randomBytes } from "node:crypto";

import { HttpApiEvent, MatrixError, createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

class FlowError extends Error {}

const hs = process.argv[2];
const lifetime = Number(process.argv[3]);
if (!hs || !lifetime) {
    console.error("usage: node refresh.mjs HOMESERVER_URL LIFETIME_MS");
    process.exit(2);
}

function step(name, detail = "") {
    console.log(`ok   ${name}${detail ? ": " + detail : ""}`);
}

function check(cond, msg) {
    if (!cond) throw new FlowError(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
    const anon = createClient({ baseUrl: hs });
    const localpart = "jsr_" + randomBytes(4).toString("hex");
    const password = "js password " + randomBytes(4).toString("hex");
    await anon.registerRequest({ username: localpart, password, auth: { type: "m.login.dummy" } });
    const login = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password,
        refresh_token: true,
    });
    check(login.refresh_token && login.expires_in_ms === lifetime, `login: ${JSON.stringify(login)}`);
    step("login with refresh_token: true", `expires_in_ms ${login.expires_in_ms}`);

    // Every refresh token the client has held, oldest first.
    const held = [login.refresh_token];
    let refreshes = 0;
    const mx = createClient({
        baseUrl: hs,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
        refreshToken: login.refresh_token,
        // No expiry is returned, so the SDK refreshes only when the server
        // answers M_UNKNOWN_TOKEN: each expiry below is the server's.
        tokenRefreshFunction: async (refreshToken) => {
            const r = await anon.refreshToken(refreshToken);
            refreshes++;
            held.push(r.refresh_token);
            return { accessToken: r.access_token, refreshToken: r.refresh_token };
        },
    });
    let loggedOut = null;
    mx.on(HttpApiEvent.SessionLoggedOut, (e) => (loggedOut = e));

    check((await mx.whoami()).device_id === login.device_id, "whoami");
    for (let i = 1; i <= 3; i++) {
        await sleep(lifetime + 500);
        const before = mx.getAccessToken();
        const who = await mx.whoami();
        check(who.device_id === login.device_id, `whoami after expiry ${i}: ${JSON.stringify(who)}`);
        check(refreshes === i && mx.getAccessToken() !== before, `expiry ${i}: ${refreshes} refreshes`);
        step(`expiry ${i}`, "soft logout, refreshed, same device");
    }
    check(loggedOut === null, `logged out too early: ${loggedOut}`);

    const caps = await mx.getCapabilities();
    const want = {
        "m.change_password": true,
        "m.3pid_changes": true,
        "m.get_login_token": true,
        "m.set_displayname": false,
        "m.set_avatar_url": false,
        "m.profile_fields": false,
    };
    for (const [k, v] of Object.entries(want)) {
        check(caps[k]?.enabled === v, `capabilities ${k}: ${JSON.stringify(caps)}`);
    }
    check(!("m.account_moderation" in caps), `moderation offered to a non-admin: ${JSON.stringify(caps)}`);
    step("capabilities", JSON.stringify(caps));

    // A thief replays the first refresh token, long since replaced.
    const stolen = await fetch(`${hs}/_matrix/client/v3/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: held[0] }),
    });
    const body = await stolen.json();
    check(stolen.status === 401 && body.errcode === "M_UNKNOWN_TOKEN" && body.soft_logout !== true,
        `thief's refresh: ${stolen.status} ${JSON.stringify(body)}`);
    step("a thief replays an old refresh token", `${stolen.status} ${body.errcode}`);
    try {
        await mx.whoami();
        throw new FlowError("the session survived the theft");
    } catch (e) {
        if (e instanceof FlowError) throw e;
        check(loggedOut !== null, `no Session.logged_out after ${e}`);
    }
    step("the client is logged out", `${loggedOut.errcode ?? loggedOut}`);
}

main().then(
    () => {
        console.log("all matrix-js-sdk refresh flows passed");
        process.exit(0);
    },
    (e) => {
        const detail = e instanceof FlowError || e instanceof MatrixError ? `${e.name}: ${e.message}` : (e?.stack ?? e);
        console.log(`FAIL ${detail}`);
        process.exit(1);
    },
);
