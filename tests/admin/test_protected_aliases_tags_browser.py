"""Protected aliases and tags in a real browser: an admin protects `production`; a member then sees it read-only,
with the reason, and is refused it on the add form; a member tags an artifact version and removes the tag, each
firing its event. Screenshots in tests/output/."""

from __future__ import annotations

import pytest

from core.roles import Role
from registry.models import Alias, ArtifactTag, Event, ProtectedAlias
from tests.factories import add_member, link, make_registered_model, make_team, make_user

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def vision():
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    add_member(team, make_user("max", staff=True), role=Role.MEMBER)
    model = make_registered_model(team, "classifier")
    link(model, user=ada, aliases=["production"])
    link(model, user=ada)
    return team, model


def test_an_admin_protects_an_alias_and_a_member_is_shown_why_it_is_read_only(admin_tab, vision):
    team, model = vision
    admin_tab.login("ada")
    page = admin_tab.goto("/admin/registry/protectedalias/add/")
    page.fill("#id_name", "production")
    admin_tab.click("input[name=_save]")
    assert "was added successfully" in admin_tab.messages()
    assert ProtectedAlias.objects.filter(team=team, name="production").exists()
    admin_tab.screenshot("protected_aliases_admin_list")

    admin_tab.logout()
    admin_tab.login("max")
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    row = page.locator("#aliases-group tr", has_text="production")
    assert row.locator(".protected").is_visible() and row.locator("a.changelink").count() == 0
    production = Alias.objects.get(registered_model=model, name="production")
    page = admin_tab.goto(f"/admin/registry/alias/{production.pk}/change/")
    assert "only the team's admins may move or remove it" in page.locator("#content").inner_text()
    assert page.locator("input[name=_save]").count() == 0 and page.locator("a.deletelink").count() == 0
    assert "Choose another version" not in page.locator("#content").inner_text()
    admin_tab.screenshot("protected_alias_read_only")

    page = admin_tab.goto(f"/admin/registry/alias/add/?registered_model={model.pk}")
    page.select_option("#id_model_version", index=1)
    page.fill("#id_alias", "production")
    admin_tab.click("input[name=_save]")
    error = page.locator(".field-alias .errorlist").inner_text()
    assert "'production' is a protected alias" in error
    assert Alias.objects.get(registered_model=model, name="production").model_version.version == "v0"
    admin_tab.screenshot("protected_alias_refused")


def test_a_member_tags_an_artifact_version_and_removes_the_tag(admin_tab, vision):
    _, model = vision
    version = model.versions.get(index=0).artifact_version
    admin_tab.login("max")
    page = admin_tab.goto(f"/admin/registry/artifactversion/{version.pk}/change/")
    admin_tab.click("#tags-group a.addlink")
    page.fill("#id_tag", "has space")
    admin_tab.click("input[name=_save]")
    assert "Invalid tag" in page.locator(".field-tag .errorlist").inner_text()
    page.fill("#id_tag", "reviewed")
    admin_tab.click("input[name=_save]")
    assert f"/admin/registry/artifactversion/{version.pk}/change/" in page.url  # back where it started
    assert page.locator("#tags-group", has_text="reviewed").is_visible()
    assert Event.objects.filter(type="ADD_ARTIFACT_TAG", context__tag="reviewed").count() == 1
    admin_tab.screenshot("artifact_version_tags")

    page = admin_tab.goto(f"/admin/registry/modelversion/{model.versions.get(index=0).pk}/change/")
    assert "reviewed" in page.locator(".field-tags").inner_text()

    page = admin_tab.goto(f"/admin/registry/artifactversion/{version.pk}/change/")
    admin_tab.click("#tags-group a.deletelink")
    admin_tab.click("input[type=submit]")  # "Yes, I'm sure"
    assert not ArtifactTag.objects.exists()
    assert Event.objects.filter(type="REMOVE_ARTIFACT_TAG", context__tag="reviewed").count() == 1
