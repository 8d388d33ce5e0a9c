// Drives a running Myelin server through the core account and device flows
// with matrix-js-sdk (the library under Element), the way Element does:
// discovery validates the homeserver through /versions, user-interactive
// auth goes through the SDK's InteractiveAuth, requests use /v3 paths and
// bearer tokens.
//
// usage: node flows.mjs HOMESERVER_URL
//
// Prints each step; exits non-zero at the first failure.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import { AutoDiscovery, InteractiveAuth, Method, MatrixError, createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

// Errors only: expected 401s (dead tokens) would each log a refresh warning.
logger.setLevel("error");

class FlowError extends Error {}

const hs = process.argv[2];
if (!hs) {
    console.error("usage: node flows.mjs HOMESERVER_URL");
    process.exit(2);
}

function step(name, detail = "") {
    console.log(`ok   ${name}${detail ? ": " + detail : ""}`);
}

function check(cond, msg) {
    if (!cond) throw new FlowError(msg);
}

function client(creds = {}) {
    return createClient({ baseUrl: hs, ...creds });
}

// expectMatrixError runs fn and requires it to fail with errcode.
async function expectMatrixError(fn, errcode, what) {
    try {
        await fn();
    } catch (e) {
        if (e instanceof MatrixError && e.errcode === errcode) return;
        throw new FlowError(`${what}: want ${errcode}, got ${e}`);
    }
    throw new FlowError(`${what}: want ${errcode}, but it succeeded`);
}

async function expectDead(accessToken, what) {
    await expectMatrixError(() => client({ accessToken }).whoami(), "M_UNKNOWN_TOKEN", what);
}

// withAuth completes user-interactive auth as Element does: InteractiveAuth
// sends the request without auth, reads the 401 challenge, does
// m.login.dummy by itself and asks us for the password stage.
function withAuth(mx, userId, password, doRequest) {
    return new Promise((resolve, reject) => {
        const ia = new InteractiveAuth({
            matrixClient: mx,
            doRequest: (auth) => doRequest(auth ?? undefined),
            stateUpdated: (stage, status) => {
                if (status.errcode) {
                    reject(new FlowError(`auth stage ${stage} failed: ${status.errcode} ${status.error}`));
                } else if (stage === "m.login.password") {
                    ia.submitAuthDict({
                        type: "m.login.password",
                        identifier: { type: "m.id.user", user: userId },
                        password,
                    });
                } else {
                    reject(new FlowError(`unexpected auth stage ${stage}`));
                }
            },
            requestEmailToken: () => Promise.reject(new FlowError("no email stage expected")),
        });
        ia.attemptAuth().then(resolve, reject);
    });
}

async function login(userId, password, extra = {}) {
    const r = await client().loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: userId },
        password,
        ...extra,
    });
    check(r.user_id === userId && r.access_token && r.device_id, `login: ${JSON.stringify(r)}`);
    return { r, mx: client({ userId, accessToken: r.access_token, deviceId: r.device_id }) };
}

async function devicesById(mx) {
    const { devices } = await mx.getDevices();
    return new Map(devices.map((d) => [d.device_id, d]));
}

function isEmpty(obj) {
    return obj && typeof obj === "object" && Object.keys(obj).length === 0;
}

async function main() {
    // Discovery: the server's .well-known, then AutoDiscovery checks that
    // /versions lists a version matrix-js-sdk supports.
    const wk = await (await fetch(`${hs}/.well-known/matrix/client`)).json();
    const discovered = await AutoDiscovery.fromDiscoveryConfig(wk);
    check(discovered["m.homeserver"].state === AutoDiscovery.SUCCESS,
        `discovery: ${JSON.stringify(discovered["m.homeserver"])}`);
    const anon = client();
    check(await anon.isVersionSupported("v1.1"), "versions: v1.1 not listed");
    const flows = await anon.loginFlows();
    check(flows.flows.some((f) => f.type === "m.login.password"), `login flows: ${JSON.stringify(flows)}`);
    step("discovery, /versions and login flows", discovered["m.homeserver"].base_url);

    // Register through InteractiveAuth (m.login.dummy in open registration).
    const localpart = "js_" + randomBytes(4).toString("hex");
    let password = "js password " + randomBytes(4).toString("hex");
    const reg = await withAuth(anon, localpart, password, (auth) =>
        anon.registerRequest({ username: localpart, password, initial_device_display_name: "js browser", auth }),
    );
    const userId = reg.user_id;
    check(userId.startsWith(`@${localpart}:`) && reg.access_token && reg.device_id, `register: ${JSON.stringify(reg)}`);
    const dev1 = reg.device_id;
    const mx = client({ userId, accessToken: reg.access_token, deviceId: dev1 });
    step("register with user-interactive auth", `${userId} device ${dev1}`);

    const who = await mx.whoami();
    check(who.user_id === userId && who.device_id === dev1, `whoami: ${JSON.stringify(who)}`);
    step("whoami", `${who.user_id} ${who.device_id}`);
    const caps = await mx.getCapabilities();
    check(caps["m.change_password"]?.enabled === true, `capabilities: ${JSON.stringify(caps)}`);
    step("capabilities", "m.change_password enabled");

    // Login without device_id: a new device; with it: the same device.
    const second = await login(userId, password, { initial_device_display_name: "js laptop" });
    const dev2 = second.r.device_id;
    check(dev2 !== dev1, "login without device_id reused the first device");
    step("login without device_id", `new device ${dev2}`);
    const third = await login(userId, password, { device_id: dev2 });
    check(third.r.device_id === dev2, `login with device_id ${dev2} returned ${third.r.device_id}`);
    await expectDead(second.r.access_token, "the replaced token of the re-used device");
    check((await third.mx.whoami()).device_id === dev2, "whoami with the new token");
    step("login with device_id", `same device ${dev2}, previous token revoked`);

    // List, get and rename devices.
    let devs = await devicesById(mx);
    check(devs.size === 2 && devs.has(dev1) && devs.has(dev2), `devices: ${[...devs.keys()]}`);
    for (const d of devs.values()) {
        for (const k of ["display_name", "last_seen_ip", "last_seen_ts"]) {
            check(k in d, `device ${d.device_id} lacks ${k}`);
        }
    }
    check(devs.get(dev1).display_name === "js browser", `device name: ${devs.get(dev1).display_name}`);
    step("list devices", [...devs.values()].map((d) => `${d.device_id}=${JSON.stringify(d.display_name)}`).join(", "));
    check(isEmpty(await mx.setDeviceDetails(dev2, { display_name: "renamed by js" })), "rename: want {}");
    const got = await mx.getDevice(dev2);
    check(got.display_name === "renamed by js", `renamed device: ${JSON.stringify(got)}`);
    await expectMatrixError(() => mx.getDevice("NOSUCHDEVICE"), "M_NOT_FOUND", "get an unknown device");
    step("rename and get device", `${dev2} → "renamed by js"`);

    // Delete one device, then several, with user-interactive auth.
    const del = await withAuth(mx, userId, password, (auth) => mx.deleteDevice(dev2, auth));
    check(isEmpty(del), `delete device: want {}, got ${JSON.stringify(del)}`);
    await expectDead(third.r.access_token, "the deleted device's token");
    step("delete device with user-interactive auth", `${dev2} gone, its token dead`);
    const a = await login(userId, password);
    const b = await login(userId, password);
    const delMany = await withAuth(mx, userId, password, (auth) =>
        mx.deleteMultipleDevices([a.r.device_id, b.r.device_id], auth),
    );
    check(isEmpty(delMany), `delete devices: want {}, got ${JSON.stringify(delMany)}`);
    await expectDead(a.r.access_token, "a device deleted in bulk");
    await expectDead(b.r.access_token, "a device deleted in bulk");
    devs = await devicesById(mx);
    check(devs.size === 1 && devs.has(dev1), `after deletes: ${[...devs.keys()]}`);
    step("delete several devices with user-interactive auth", `${a.r.device_id}, ${b.r.device_id} gone`);

    // Change password: other devices are logged out, this one stays.
    const other = await login(userId, password);
    const newPassword = password + " changed";
    await withAuth(mx, userId, password, (auth) => mx.setPassword(auth, newPassword, true));
    await expectDead(other.r.access_token, "another device after the password change");
    check((await mx.whoami()).device_id === dev1, "the changing device after the password change");
    await expectMatrixError(() => login(userId, password), "M_FORBIDDEN", "login with the old password");
    password = newPassword;
    step("change password with user-interactive auth", "other devices logged out, old password refused");

    // Logout one device, then all.
    const fourth = await login(userId, password);
    check(isEmpty(await fourth.mx.logout()), "logout: want {}");
    await expectDead(fourth.r.access_token, "the logged-out token");
    check((await mx.whoami()).user_id === userId, "another device after logout");
    step("logout", "token dead, other devices kept");
    const fifth = await login(userId, password);
    const all = await mx.http.authedRequest(Method.Post, "/logout/all");
    check(isEmpty(all), `logout all: want {}, got ${JSON.stringify(all)}`);
    await expectDead(reg.access_token, "the caller's token after logout/all");
    await expectDead(fifth.r.access_token, "another device's token after logout/all");
    step("logout all", "every token dead");
}

const sdkVersion = JSON.parse(readFileSync(new URL("node_modules/matrix-js-sdk/package.json", import.meta.url))).version;
console.log(`matrix-js-sdk ${sdkVersion} against ${hs}`);
main().then(
    () => {
        console.log("all matrix-js-sdk flows passed");
        process.exit(0);
    },
    (e) => {
        // A MatrixError's message names the request; other errors need their stack.
        const detail = e instanceof FlowError || e instanceof MatrixError ? `${e.name}: ${e.message}` : (e?.stack ?? e);
        console.log(`FAIL ${detail}`);
        process.exit(1);
    },
);
