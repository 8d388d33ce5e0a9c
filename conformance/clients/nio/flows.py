#!/usr/bin/python3
"""Drive a running Myelin server through the core account and device flows
with matrix-nio (Debian's python3-matrix-nio), the way a nio-based bot or
client does: r0 paths, ?access_token= in the query, nio's own response
parsing (which rejects device lists with missing keys, error bodies without
errcode and error, UIA challenges without params, and anything but {} from
update, delete and logout).

usage: /usr/bin/python3 flows.py HOMESERVER_URL

Prints each step; exits non-zero at the first failure.
"""

import asyncio
import importlib.metadata
import secrets
import sys

import nio
from nio import Api
from nio.responses import (
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    ErrorResponse,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiResponse,
)


# Fail instead of retrying forever: nio retries refused connections and 429s
# without limit by default.
CONFIG = nio.AsyncClientConfig(max_limit_exceeded=0, max_timeouts=2, request_timeout=30)


class FlowError(Exception):
    pass


def step(name, detail=""):
    print(f"ok   {name}" + (f": {detail}" if detail else ""), flush=True)


def expect(resp, cls, what):
    if not isinstance(resp, cls):
        raise FlowError(f"{what}: want {cls.__name__}, got {type(resp).__name__}: {resp}")
    return resp


async def expect_dead(hs, token, what):
    """A fresh client holding token must be refused with M_UNKNOWN_TOKEN
    (nio forgets its own token on logout, so a probe asks)."""
    probe = nio.AsyncClient(hs, config=CONFIG)
    probe.access_token = token
    try:
        resp = await probe.whoami()
    finally:
        await probe.close()
    if not isinstance(resp, ErrorResponse) or resp.status_code != "M_UNKNOWN_TOKEN":
        raise FlowError(f"{what}: want M_UNKNOWN_TOKEN, got {type(resp).__name__}: {resp}")


class Session:
    """One logged-in nio client (one device)."""

    def __init__(self, hs, user, device_id=None):
        self.client = nio.AsyncClient(hs, user, device_id=device_id, config=CONFIG)

    async def close(self):
        await self.client.close()


async def login(hs, user, password, device_id=None, device_name="nio"):
    s = Session(hs, user, device_id)
    resp = await s.client.login(password=password, device_name=device_name)
    expect(resp, LoginResponse, f"login as {user} (device_id={device_id})")
    return s, resp


async def uia(client, method, path, body, user, password, what):
    """Send a request protected by user-interactive auth as nio does for
    delete_devices: first without auth (a 401 challenge that nio parses,
    which needs session, flows and params), then with m.login.password."""
    resp = await client._send(DeleteDevicesResponse, method, path, Api.to_json(body))
    challenge = expect(resp, DeleteDevicesAuthResponse, f"{what}: challenge")
    stages = [f["stages"] for f in challenge.flows]
    if ["m.login.password"] not in stages:
        raise FlowError(f"{what}: no m.login.password flow in {stages}")
    body = dict(body)
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "session": challenge.session,
    }
    resp = await client._send(DeleteDevicesResponse, method, path, Api.to_json(body))
    return expect(resp, DeleteDevicesResponse, f"{what}: with m.login.password")


def devices_by_id(resp):
    return {d.id: d for d in resp.devices}


async def run(hs):
    sessions = []
    try:
        await flows(hs, sessions)
    finally:
        for s in sessions:
            await s.close()


async def flows(hs, sessions):
    localpart = "nio_" + secrets.token_hex(4)
    password = "nio password " + secrets.token_hex(4)

    # Register: nio sends one request with m.login.dummy and no session.
    first = Session(hs, localpart)
    sessions.append(first)
    reg = expect(await first.client.register(localpart, password, device_name="nio phone"),
                 RegisterResponse, "register")
    user_id, dev1 = reg.user_id, reg.device_id
    first.client.access_token, first.client.user_id, first.client.device_id = reg.access_token, user_id, dev1
    step("register with m.login.dummy", f"{user_id} device {dev1}")

    # nio 0.20 parses only user_id from whoami.
    who = expect(await first.client.whoami(), WhoamiResponse, "whoami")
    if who.user_id != user_id:
        raise FlowError(f"whoami: want {user_id}, got {who.user_id}")
    step("whoami", who.user_id)

    # Login without device_id: a new device.
    second, lr = await login(hs, user_id, password, device_name="nio laptop")
    sessions.append(second)
    dev2 = lr.device_id
    if dev2 == dev1:
        raise FlowError("login without device_id reused the first device")
    step("login without device_id", f"new device {dev2}")

    # Login with that device_id: same device, and the old token dies.
    third, lr = await login(hs, user_id, password, device_id=dev2)
    sessions.append(third)
    if lr.device_id != dev2:
        raise FlowError(f"login with device_id {dev2} returned {lr.device_id}")
    await expect_dead(hs, second.client.access_token, "the replaced token of the re-used device")
    expect(await third.client.whoami(), WhoamiResponse, "whoami with the new token")
    step("login with device_id", f"same device {dev2}, previous token revoked")

    # Device list: nio rejects the whole list when a device lacks a key.
    devs = devices_by_id(expect(await first.client.devices(), DevicesResponse, "list devices"))
    if set(devs) != {dev1, dev2}:
        raise FlowError(f"list devices: want {{{dev1}, {dev2}}}, got {sorted(devs)}")
    if devs[dev1].display_name != "nio phone":
        raise FlowError(f"device {dev1} display_name: {devs[dev1].display_name!r}")
    step("list devices", ", ".join(f"{d.id}={d.display_name!r}" for d in devs.values()))

    expect(await first.client.update_device(dev2, {"display_name": "renamed by nio"}),
           UpdateDeviceResponse, "rename device")
    devs = devices_by_id(expect(await first.client.devices(), DevicesResponse, "list devices"))
    if devs[dev2].display_name != "renamed by nio":
        raise FlowError(f"rename device: display_name is {devs[dev2].display_name!r}")
    step("rename device", f"{dev2} → 'renamed by nio'")

    # Delete with UIA through nio's delete_devices.
    challenge = await first.client.delete_devices([dev2])
    challenge = expect(challenge, DeleteDevicesAuthResponse, "delete device: challenge")
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": password, "session": challenge.session}
    expect(await first.client.delete_devices([dev2], auth), DeleteDevicesResponse, "delete device")
    await expect_dead(hs, third.client.access_token, "the deleted device's token")
    devs = devices_by_id(expect(await first.client.devices(), DevicesResponse, "list devices"))
    if set(devs) != {dev1}:
        raise FlowError(f"after delete: devices {sorted(devs)}")
    step("delete device with user-interactive auth", f"{dev2} gone, its token dead")

    # Change password: logs out every other device, keeps this one.
    other, _ = await login(hs, user_id, password, device_name="nio tablet")
    sessions.append(other)
    new_password = password + " changed"
    path = Api._build_path(["account", "password"], {"access_token": first.client.access_token})
    await uia(first.client, "POST", path, {"new_password": new_password}, localpart, password,
              "change password")
    await expect_dead(hs, other.client.access_token, "another device after the password change")
    expect(await first.client.whoami(), WhoamiResponse, "the changing device after the password change")
    probe = Session(hs, user_id)
    sessions.append(probe)
    resp = await probe.client.login(password=password)
    if not isinstance(resp, ErrorResponse) or resp.status_code != "M_FORBIDDEN":
        raise FlowError(f"login with the old password: want M_FORBIDDEN, got {resp}")
    step("change password with user-interactive auth", "other devices logged out, old password refused")

    # Logout: only this device.
    fourth, _ = await login(hs, user_id, new_password, device_name="nio watch")
    sessions.append(fourth)
    token = fourth.client.access_token
    expect(await fourth.client.logout(), LogoutResponse, "logout")
    await expect_dead(hs, token, "the logged-out token")
    expect(await first.client.whoami(), WhoamiResponse, "another device after logout")
    step("logout", "token dead, other devices kept")

    # Logout all: every device.
    fifth, _ = await login(hs, user_id, new_password, device_name="nio desktop")
    sessions.append(fifth)
    token = first.client.access_token
    expect(await first.client.logout(all_devices=True), LogoutResponse, "logout all")
    await expect_dead(hs, token, "the caller's token after logout/all")
    await expect_dead(hs, fifth.client.access_token, "another device's token after logout/all")
    step("logout all", "every token dead")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(f"matrix-nio {importlib.metadata.version('matrix-nio')} against {sys.argv[1]}", flush=True)
    try:
        asyncio.run(run(sys.argv[1]))
    except FlowError as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
    print("all matrix-nio flows passed", flush=True)


if __name__ == "__main__":
    main()
