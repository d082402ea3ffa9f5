"""The release path in .github/workflows: what reaches production, and how.

Every push to main is tested once, deployed to staging, smoke-checked there,
and only then, after a required reviewer of the `prod` GitHub environment
approves, the same build goes to production. Third-party actions run at a
commit SHA (a tag can be moved to other code; a commit cannot).
"""

import pathlib
import re
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name):
    # PyYAML reads the key `on` as the boolean True.
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps(document):
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_third_party_actions_are_pinned_to_a_commit(path):
    for line in path.read_text().splitlines():
        match = re.search(r"\buses:\s*(\S+)(.*)$", line)
        if not match or match.group(1).startswith("./"):
            continue
        action, comment = match.groups()
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), (
            f"{path.name}: {action} is not pinned to a commit SHA"
        )
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), (
            f"{path.name}: {action} needs its version as a comment ('# v1.2.3') for review and Dependabot"
        )


def test_dependabot_keeps_the_pins_current():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert "github-actions" in [u["package-ecosystem"] for u in config["updates"]]


def test_main_goes_to_staging_then_to_prod_after_approval():
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"] == {"branches": ["main"]}, "only main deploys"
    jobs = deploy["jobs"]
    assert jobs["test"]["with"]["upload-build"] is True
    assert jobs["staging"]["needs"] == "test"
    assert jobs["prod"]["needs"] == "staging", "production only after staging passed"
    for stage in ("staging", "prod"):
        job = jobs[stage]
        assert job["uses"] == "./.github/workflows/sam-deploy.yml"
        assert job["with"] == {"stage": stage}
        assert job["if"] == "github.ref == 'refs/heads/main'"
        assert job["permissions"]["id-token"] == "write"
    assert deploy["concurrency"]["cancel-in-progress"] is False, "never stop a deploy half-way"


def test_each_stage_deploys_the_tested_build_in_its_own_environment():
    deploy = workflow("sam-deploy.yml")
    (job,) = deploy["jobs"].values()
    # The GitHub environment named after the stage: its reviewers, its
    # deployment-branch rule, its variables (role ARN, region, alarm e-mail).
    assert job["environment"]["name"] == "${{ inputs.stage }}"
    scripts = "\n".join(step.get("run", "") for step in steps(deploy))
    assert "sam build" not in scripts and "cargo" not in scripts, "nothing is rebuilt"
    assert '--config-env "$STAGE"' in scripts
    assert '--template-file .aws-sam/build/template.yaml' in scripts
    downloads = [s for s in steps(deploy) if "download-artifact" in s.get("uses", "")]
    assert [d["with"]["name"] for d in downloads] == ["sam-build"]
    test = workflow("test.yml")
    uploads = [s for s in steps(test) if "upload-artifact" in s.get("uses", "")]
    assert [u["with"]["name"] for u in uploads] == ["sam-build"]


def test_every_deployed_stage_has_its_samconfig_environment():
    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    stacks = set()
    for stage in ("staging", "prod"):
        overrides = samconfig[stage]["deploy"]["parameters"]["parameter_overrides"].split()
        assert f"Stage={stage}" in overrides
        stacks.add(samconfig[stage]["global"]["parameters"]["stack_name"])
    assert len(stacks) == 2, "staging and prod are separate stacks"


def test_the_smoke_check_expects_a_code_the_api_really_answers():
    deploy = workflow("sam-deploy.yml")
    (smoke,) = [s for s in steps(deploy) if s.get("id") == "smoke"]
    (code,) = re.findall(r'body\["code"\] == "(\w+)"', smoke["run"])
    assert f'"{code}"' in (ROOT / "shared" / "src" / "error.rs").read_text()
    assert "/users/auth/get_code" in smoke["run"]
