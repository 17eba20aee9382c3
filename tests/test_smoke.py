from tests.seed import add_session, login, seed_world


async def test_list_answers_seeded_session(client, database):
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3})
    headers = await login(client, "super")
    response = await client.get(
        "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime", headers=headers
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["data"][0]["attendeeCount"] == 3
