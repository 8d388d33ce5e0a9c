// Drives a running Myelin server through secret storage and server-side
// key backup with matrix-js-sdk's Rust crypto, as Element sets up and
// recovers encryption:
//
//   device A: bootstrapCrossSigning, then bootstrapSecretStorage with a new
//             recovery key (the cross-signing keys go into it) and a new
//             key backup (resetKeyBackup), then backs up a megolm session
//             key;
//   device B: of the same user, reads the cross-signing keys and the backup
//             decryption key from secret storage with the recovery key,
//             becomes cross-signing verified without SAS, and restores the
//             session key from the backup.
//
// Each client runs the SDK's own sync loop (startClient), so the account
// data the SDK writes (the secret storage key, the default key, the
// encrypted secrets) comes back to it through /sync, as the SDK waits for.
//
// usage: node stores.mjs HOMESERVER_URL
//
// Prints each step; exits non-zero at the first failure.

import { generateKeyPairSync, randomBytes } from "node:crypto";

import { api as apiAt, check, run, step, syncingClient, waitFor } from "./syncing.mjs";

const hs = process.argv[2];
if (!hs) {
    console.error("usage: node stores.mjs HOMESERVER_URL");
    process.exit(2);
}

const api = (...args) => apiAt(hs, ...args);

const b64 = (buf) => Buffer.from(buf).toString("base64").replace(/=+$/, "");

// The recovery key lives only here, as a user would keep it.
let recoveryKey = null;

function cryptoClient(creds) {
    return syncingClient(hs, creds, {
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                check(recoveryKey, "the SDK asked for the secret storage key before one was made");
                return [Object.keys(keys)[0], recoveryKey.privateKey];
            },
        },
    });
}

// A megolm session in session-export format (version 1, message index 0,
// a random ratchet, the session's ed25519 public key), as a device that
// took part in an encrypted room would hold it.
function megolmSession(roomId) {
    const { publicKey } = generateKeyPairSync("ed25519");
    const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const exported = Buffer.concat([Buffer.from([1]), Buffer.alloc(4), randomBytes(128), pub]);
    const { publicKey: sender } = generateKeyPairSync("x25519");
    const { publicKey: signer } = generateKeyPairSync("ed25519");
    return {
        algorithm: "m.megolm.v1.aes-sha2",
        room_id: roomId,
        session_id: b64(pub),
        session_key: b64(exported),
        sender_key: b64(sender.export({ format: "der", type: "spki" }).subarray(-32)),
        sender_claimed_keys: { ed25519: b64(signer.export({ format: "der", type: "spki" }).subarray(-32)) },
        forwarding_curve25519_key_chain: [],
    };
}

async function main() {
    const user = "stores_" + randomBytes(4).toString("hex");
    const password = "correct horse battery staple";
    let r = await api("POST", "/register", null, { username: user, password, auth: { type: "m.login.dummy" }, initial_device_display_name: "A" });
    check(r.status === 200, `register: ${r.status} ${JSON.stringify(r.body)}`);
    const userId = r.body.user_id;
    const devA = r.body.device_id;
    const a = await cryptoClient({ userId, accessToken: r.body.access_token, deviceId: devA });
    const ca = a.getCrypto();
    step("device A with Rust crypto", `${userId} ${r.body.device_id}`);

    await ca.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
        },
    });
    const status = await ca.getCrossSigningStatus();
    check(status.publicKeysOnDevice && status.privateKeysCachedLocally.masterKey, `A's cross-signing: ${JSON.stringify(status)}`);
    step("bootstrapCrossSigning on A");

    recoveryKey = await ca.createRecoveryKeyFromPassphrase();
    await ca.bootstrapSecretStorage({
        createSecretStorageKey: async () => recoveryKey,
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    step("bootstrapSecretStorage with a new key and a new key backup");

    const tokA = a.getAccessToken();
    const adPath = (type) => `/user/${encodeURIComponent(userId)}/account_data/${encodeURIComponent(type)}`;
    r = await api("GET", adPath("m.secret_storage.default_key"), tokA);
    check(r.status === 200 && r.body.key, `default key: ${JSON.stringify(r.body)}`);
    const keyId = r.body.key;
    r = await api("GET", adPath("m.secret_storage.key." + keyId), tokA);
    check(r.status === 200 && r.body.algorithm === "m.secret_storage.v1.aes-hmac-sha2", `key description: ${JSON.stringify(r.body)}`);
    r = await api("GET", adPath("m.megolm_backup.v1"), tokA);
    check(r.status === 200 && r.body.encrypted?.[keyId]?.ciphertext, `backup key in secret storage: ${JSON.stringify(r.body)}`);
    for (const t of ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"]) {
        r = await api("GET", adPath(t), tokA);
        check(r.status === 200 && r.body.encrypted?.[keyId]?.ciphertext, `${t} in secret storage: ${JSON.stringify(r.body)}`);
    }
    check(await ca.isSecretStorageReady(), "A's secret storage is not ready");
    const version = await api("GET", "/room_keys/version", tokA);
    check(version.status === 200 && version.body.algorithm === "m.megolm_backup.v1.curve25519-aes-sha2", `backup version: ${JSON.stringify(version.body)}`);
    check(version.body.auth_data?.signatures?.[userId]?.["ed25519:" + a.getDeviceId()], `auth_data not signed by A: ${JSON.stringify(version.body)}`);
    step("secret storage and backup on the server", `version ${version.body.version}`);

    const info = await waitFor("A to trust and enable the backup", async () => (await ca.getActiveSessionBackupVersion()) ?? (await ca.checkKeyBackupAndEnable(), null));
    check(info === version.body.version, `A backs up to ${info}, server says ${version.body.version}`);
    step("A uses the backup", info);

    const session = megolmSession("!stores:" + userId.split(":")[1]);
    await ca.importRoomKeys([session]);
    const stored = await waitFor("the session key in the backup", async () => {
        const k = await api("GET", `/room_keys/keys?version=${info}`, tokA);
        return k.status === 200 && k.body.rooms?.[session.room_id]?.sessions?.[session.session_id] ? k.body : null;
    });
    const backed = stored.rooms[session.room_id].sessions[session.session_id];
    check(backed.session_data?.ciphertext && backed.session_data?.ephemeral && backed.session_data?.mac, `opaque session data: ${JSON.stringify(backed)}`);
    r = await api("GET", "/room_keys/version", tokA);
    check(r.body.count === 1, `count after backing up one key: ${JSON.stringify(r.body)}`);
    step("A backed up a session key", session.session_id);

    r = await api("POST", "/login", null, {
        type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password, initial_device_display_name: "B",
    });
    check(r.status === 200, `login B: ${r.status} ${JSON.stringify(r.body)}`);
    const b = await cryptoClient({ userId, accessToken: r.body.access_token, deviceId: r.body.device_id });
    const cb = b.getCrypto();
    step("device B with Rust crypto", r.body.device_id);

    // B's crypto queries its own user's keys (A's device and the
    // cross-signing keys) after its first sync; it can import the private
    // keys from secret storage only once it knows the public ones.
    await waitFor("B's crypto to know A's device", async () => (await cb.getUserDeviceInfo([userId])).get(userId)?.has(devA));
    // B reads the cross-signing keys from secret storage and signs itself:
    // verified without SAS once its sync loop hears, through
    // device_lists.changed, that its own device's keys changed.
    await cb.bootstrapCrossSigning({});
    const devB = b.getDeviceId();
    const verified = await waitFor("B to be cross-signing verified", async () =>
        (await cb.getDeviceVerificationStatus(userId, devB))?.crossSigningVerified);
    check(verified, "B is not cross-signing verified");
    const q = await api("POST", "/keys/query", b.getAccessToken(), { device_keys: { [userId]: [] } });
    const ssk = Object.keys(q.body.self_signing_keys?.[userId]?.keys ?? {})[0];
    check(ssk && q.body.device_keys?.[userId]?.[devB]?.signatures?.[userId]?.[ssk], `B's device is not signed by the self-signing key on the server: ${JSON.stringify(q.body)}`);
    step("B restored the cross-signing keys from secret storage and is verified without SAS");

    await cb.loadSessionBackupPrivateKeyFromSecretStorage();
    const keyB = await cb.getSessionBackupPrivateKey();
    const keyA = await ca.getSessionBackupPrivateKey();
    check(keyB && keyA && Buffer.from(keyB).equals(Buffer.from(keyA)), "B's backup key differs from A's");
    step("B restored the backup key from secret storage with the recovery key");

    const restored = await cb.restoreKeyBackup();
    check(restored.total === 1 && restored.imported === 1, `restore: ${JSON.stringify(restored)}`);
    const keys = JSON.parse(await cb.exportRoomKeysAsJson());
    check(keys.some((k) => k.session_id === session.session_id && k.room_id === session.room_id), "B lacks the restored session");
    step("B fetched the backed-up session key from the backup");

    step("each device synced through Myelin's /sync", `A ${a.syncCount()} and B ${b.syncCount()} requests`);

    a.stopClient();
    b.stopClient();
}

run(main);
