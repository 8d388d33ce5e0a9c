// Sends an Olm-encrypted to-device message between two federated Myelin
// servers with matrix-js-sdk (Rust crypto), each client running the SDK's
// own sync loop (startClient) against its own server:
//
//   bob on server B: registers; his client uploads device and one-time keys;
//   alice on server A: registers, fetches bob's device keys (A asks B over
//             federation), encrypts a payload for bob's device with Olm
//             (encryptToDeviceMessages claims a one-time key of bob's over
//             federation) and sends it as m.room.encrypted with
//             sendToDevice; A forwards it to B as an m.direct_to_device EDU;
//   bob:      receives it through /sync, and his crypto decrypts it: the
//             event type and content are alice's, and the sender is alice.
//
// usage: node olm_federation.mjs SERVER_A_URL SERVER_B_URL
//
// Prints each step; exits non-zero at the first failure.

import { randomBytes } from "node:crypto";

import { UserId } from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent } from "matrix-js-sdk";

import { api, check, run, step, syncingClient, waitFor, within } from "./syncing.mjs";

const [hsA, hsB] = process.argv.slice(2);
if (!hsA || !hsB) {
    console.error("usage: node olm_federation.mjs SERVER_A_URL SERVER_B_URL");
    process.exit(2);
}

async function register(hs, name) {
    const r = await api(hs, "POST", "/register", null, {
        username: name + "_" + randomBytes(4).toString("hex"),
        password: "correct horse battery staple",
        auth: { type: "m.login.dummy" },
        initial_device_display_name: name,
    });
    check(r.status === 200, `register ${name} on ${hs}: ${r.status} ${JSON.stringify(r.body)}`);
    return { userId: r.body.user_id, accessToken: r.body.access_token, deviceId: r.body.device_id };
}

async function main() {
    const bobCreds = await register(hsB, "bob");
    const bob = await syncingClient(hsB, bobCreds);
    // Bob's client uploads its device keys and one-time keys after its
    // first sync; wait until B holds some, so alice can claim one.
    await waitFor("bob's one-time keys on B", async () => {
        const r = await api(hsB, "POST", "/keys/upload", bobCreds.accessToken, {});
        return r.status === 200 && r.body.one_time_key_counts?.signed_curve25519 > 0;
    });
    step("bob on B syncing with Rust crypto, keys uploaded", `${bobCreds.userId} ${bobCreds.deviceId}`);

    const aliceCreds = await register(hsA, "alice");
    const alice = await syncingClient(hsA, aliceCreds);
    step("alice on A syncing with Rust crypto", `${aliceCreds.userId} ${aliceCreds.deviceId}`);

    // The crypto encrypts only for users whose device lists it tracks, and
    // accepts an Olm-encrypted event (other than a room key) only from a
    // device it knows; a shared encrypted room would make alice and bob
    // track each other. Myelin holds no rooms, so each crypto is told to
    // track the other user as a room member would; each then queries the
    // other's keys (its server asks the other over federation).
    const track = async (mx, other, what) => {
        const c = mx.getCrypto();
        await c.olmMachine.updateTrackedUsers([new UserId(other.userId)]);
        return waitFor(what, async () => {
            await c.outgoingRequestsManager.doProcessOutgoingRequests();
            return (await c.getUserDeviceInfo([other.userId])).get(other.userId)?.get(other.deviceId);
        });
    };
    const ca = alice.getCrypto();
    const bobDevice = await track(alice, bobCreds, "alice's crypto to know bob's device");
    step("alice's crypto fetched bob's device keys through A from B", bobDevice.getIdentityKey());
    const aliceDevice = await track(bob, aliceCreds, "bob's crypto to know alice's device");
    step("bob's crypto fetched alice's device keys through B from A", aliceDevice.getIdentityKey());

    const type = "org.myelin.test.secret";
    const payload = { secret: randomBytes(16).toString("hex"), note: "only bob's device can read this" };
    const batch = await ca.encryptToDeviceMessages(type, [{ userId: bobCreds.userId, deviceId: bobCreds.deviceId }], payload);
    check(batch.eventType === "m.room.encrypted" && batch.batch.length === 1, `batch: ${JSON.stringify(batch)}`);
    const encrypted = batch.batch[0].payload;
    check(encrypted.algorithm === "m.olm.v1.curve25519-aes-sha2" && encrypted.ciphertext?.[bobDevice.getIdentityKey()],
        `not Olm-encrypted for bob's device: ${JSON.stringify(encrypted)}`);
    check(!JSON.stringify(encrypted).includes(payload.secret), "the encrypted payload carries the secret in clear");
    step("alice encrypted a to-device payload for bob's device with Olm (a one-time key claimed from B)");

    // Bob's crypto decrypts to-device messages as its sync loop delivers
    // them; the event the client emits is the decrypted one.
    const received = new Promise((resolve) => {
        bob.on(ClientEvent.ToDeviceEvent, (ev) => {
            if (ev.getSender() === aliceCreds.userId) resolve(ev);
        });
    });
    await alice.sendToDevice("m.room.encrypted", new Map([[bobCreds.userId, new Map([[bobCreds.deviceId, encrypted]])]]));
    step("alice sent it with sendToDevice as m.room.encrypted to A");

    const ev = await within("bob to receive alice's message through B's /sync", received);
    check(ev.getType() === type, `bob got a ${ev.getType()} (${JSON.stringify(ev.getContent())}), not the decrypted ${type}`);
    const got = ev.getContent();
    check(Object.keys(got).length === 2 && got.secret === payload.secret && got.note === payload.note, `decrypted content ${JSON.stringify(got)}, want ${JSON.stringify(payload)}`);
    step("bob received it through B's /sync and decrypted it", `${ev.getType()} ${JSON.stringify(ev.getContent())}`);

    step("each client synced through its server's /sync", `alice ${alice.syncCount()} and bob ${bob.syncCount()} requests`);
    alice.stopClient();
    bob.stopClient();
}

run(main);
