from tests.helpers import GameServer


async def test_flow(game_server: GameServer, ott, clock):
    grant = await ott()
    gs = await game_server.start(grant)
    clock.advance(100)
    r = await game_server.heartbeat(gs)
    print(r.json())
    assert r.json()["data"]["result"] == "OK"
    r = await game_server.end(gs, 99)
    print(r.json())
    r = await game_server.end(gs, 99)
    print(r.status_code, r.json())
    r = await game_server.heartbeat(gs)
    print(r.status_code, r.json(), r.headers)
