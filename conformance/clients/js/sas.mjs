// Verifies a user's new device from an old one with emoji (SAS), as Element
// does, with two matrix-js-sdk clients (Rust crypto) that each run the
// SDK's own sync loop (startClient) against a running Myelin server. Self
// verification travels entirely as to-device messages, and each device
// learns of the other and of the new signatures through device_lists in
// /sync:
//
//   device A: registers, bootstraps cross-signing;
//   device B: logs in, asks the user's other devices to verify it
//             (requestOwnUserVerification); A accepts; B starts SAS;
//             both show the same seven emoji and confirm;
//   then:     A has signed B with its self-signing key, and B trusts its
//             own identity: B's device is cross-signing verified.
//
// usage: node sas.mjs HOMESERVER_URL
//
// Prints each step; exits non-zero at the first failure.

import { randomBytes } from "node:crypto";

import { CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import { VerificationPhase, VerifierEvent } from "matrix-js-sdk/lib/crypto-api/verification.js";

import { api as apiAt, check, run, step, syncingClient as syncingClientAt, waitFor, within } from "./syncing.mjs";

const hs = process.argv[2];
if (!hs) {
    console.error("usage: node sas.mjs HOMESERVER_URL");
    process.exit(2);
}

const api = (...args) => apiAt(hs, ...args);
const syncingClient = (creds) => syncingClientAt(hs, creds, { verificationMethods: ["m.sas.v1"] });

// showSas resolves with the verifier's SAS callbacks once it shows emoji.
function showSas(verifier) {
    const cbs = verifier.getShowSasCallbacks();
    if (cbs) return Promise.resolve(cbs);
    return new Promise((resolve) => verifier.once(VerifierEvent.ShowSas, resolve));
}

function phaseName(p) {
    return VerificationPhase[p] ?? String(p);
}

async function main() {
    const user = "sas_" + randomBytes(4).toString("hex");
    const password = "correct horse battery staple";
    let r = await api("POST", "/register", null, { username: user, password, auth: { type: "m.login.dummy" }, initial_device_display_name: "A" });
    check(r.status === 200, `register: ${r.status} ${JSON.stringify(r.body)}`);
    const userId = r.body.user_id;
    const devA = r.body.device_id;
    const a = await syncingClient({ userId, accessToken: r.body.access_token, deviceId: devA });
    const ca = a.getCrypto();
    step("device A syncing with Rust crypto", `${userId} ${devA}`);

    await ca.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
        },
    });
    const status = await ca.getCrossSigningStatus();
    check(status.publicKeysOnDevice && status.privateKeysCachedLocally.selfSigningKey, `A's cross-signing: ${JSON.stringify(status)}`);
    check((await ca.getDeviceVerificationStatus(userId, devA))?.crossSigningVerified, "A is not cross-signing verified after bootstrap");
    step("A bootstrapped cross-signing and trusts itself");

    r = await api("POST", "/login", null, {
        type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password, initial_device_display_name: "B",
    });
    check(r.status === 200, `login B: ${r.status} ${JSON.stringify(r.body)}`);
    const devB = r.body.device_id;

    // A waits for B's request, which arrives as to-device
    // m.key.verification.request through A's /sync.
    const requestAtA = new Promise((resolve) => {
        a.on(CryptoEvent.VerificationRequestReceived, (req) => {
            if (req.otherUserId === userId && req.otherDeviceId === devB) resolve(req);
        });
    });

    const b = await syncingClient({ userId, accessToken: r.body.access_token, deviceId: devB });
    const cb = b.getCrypto();
    check(!(await cb.getDeviceVerificationStatus(userId, devB))?.crossSigningVerified, "B is verified before any verification");
    step("device B syncing with Rust crypto, not yet verified", devB);

    // A learns B's device keys through device_lists.changed in its /sync,
    // B learns A's (and the user's cross-signing keys) by querying its own
    // user's keys; each must know the other's device before SAS.
    await waitFor("A to see B's device keys", async () => (await ca.getUserDeviceInfo([userId])).get(userId)?.has(devB));
    await waitFor("B to see A's device keys", async () => (await cb.getUserDeviceInfo([userId])).get(userId)?.has(devA));
    step("each device sees the other's keys through /sync device lists");

    const reqB = await cb.requestOwnUserVerification();
    check(reqB.isSelfVerification, "B's request is not a self-verification");
    const reqA = await within("A to receive B's verification request", requestAtA);
    check(reqA.isSelfVerification && !reqA.initiatedByMe, "A's request is not an incoming self-verification");
    step("A received B's verification request", `transaction ${reqA.transactionId}`);

    await reqA.accept();
    await waitFor("B's request to become ready", async () => reqB.phase === VerificationPhase.Ready || reqB.phase >= VerificationPhase.Cancelled);
    check(reqB.phase === VerificationPhase.Ready, `B's request is ${phaseName(reqB.phase)}, not Ready (cancel ${reqB.cancellationCode})`);
    step("A accepted; the request is ready on B");

    const verifierB = await reqB.startVerification("m.sas.v1");
    await waitFor("A to see SAS start", async () => reqA.verifier || reqA.phase >= VerificationPhase.Cancelled);
    const verifierA = reqA.verifier;
    check(verifierA, `A has no verifier; its request is ${phaseName(reqA.phase)} (cancel ${reqA.cancellationCode})`);

    // verify() runs the exchange (accept, keys, MACs) and resolves once done.
    const doneA = verifierA.verify();
    const doneB = verifierB.verify();
    const [sasA, sasB] = await within("both sides to show emoji", Promise.all([showSas(verifierA), showSas(verifierB)]));
    const emojiA = (sasA.sas.emoji ?? []).map((e) => e[0] + " " + e[1]);
    const emojiB = (sasB.sas.emoji ?? []).map((e) => e[0] + " " + e[1]);
    check(emojiA.length === 7, `A shows ${emojiA.length} emoji`);
    check(JSON.stringify(emojiA) === JSON.stringify(emojiB), `emoji differ: A ${emojiA.join(", ")} / B ${emojiB.join(", ")}`);
    step("A and B show the same emoji", emojiA.map((e) => e.split(" ")[1]).join(" "));

    await Promise.all([sasA.confirm(), sasB.confirm()]);
    await within("both verifiers to finish", Promise.all([doneA, doneB]));
    await waitFor("both requests to be done", async () => reqA.phase === VerificationPhase.Done && reqB.phase === VerificationPhase.Done);
    step("both confirmed; the verification is done on both devices");

    // A signed B's device with its self-signing key and uploaded the
    // signature; B trusts the user's master key (it verified A, which the
    // master key signs) and sees the signature once its /sync says its own
    // device list changed.
    const verified = await waitFor("B to be cross-signing verified", async () =>
        (await cb.getDeviceVerificationStatus(userId, devB))?.crossSigningVerified);
    check(verified, "B is not cross-signing verified");
    check((await cb.getUserVerificationStatus(userId)).isCrossSigningVerified(), "B does not trust its own identity");
    await waitFor("A to see B cross-signing verified", async () =>
        (await ca.getDeviceVerificationStatus(userId, devB))?.crossSigningVerified);
    const q = await api("POST", "/keys/query", b.getAccessToken(), { device_keys: { [userId]: [] } });
    const ssk = Object.keys(q.body.self_signing_keys?.[userId]?.keys ?? {})[0];
    check(ssk && q.body.device_keys?.[userId]?.[devB]?.signatures?.[userId]?.[ssk],
        `B's device is not signed by the self-signing key on the server: ${JSON.stringify(q.body)}`);
    step("B is cross-signing verified, and trusts its identity");

    step("each device synced through Myelin's /sync", `A ${a.syncCount()} and B ${b.syncCount()} requests`);
    a.stopClient();
    b.stopClient();
}

run(main);
