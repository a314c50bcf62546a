"""Delete each of the cluster's safety checks once and run the test that guards it: every test
must fail (exit 1 when one passes). Each file is restored afterwards. Run from the repository
root, outside the test suite: python scripts/delete_checks.py"""

import sys

from deletions import run_deletions

M = [
    (
        "heartbeat success resets the failure count",
        "minicluster/cluster/heartbeat.py",
        "        if ok:\n            state.failures = 0\n",
        "        if ok:\n            pass\n",
        "test_a_heartbeat_request_that_gets_through_resets_the_failure_count",
    ),
    (
        "failure threshold (lost at the first failure)",
        "minicluster/cluster/heartbeat.py",
        "            if state.failures >= self._threshold:",
        "            if True:",
        "test_one_unreachable_heartbeat_is_tolerated_with_a_threshold_of_two",
    ),
    (
        "failure threshold (never lost)",
        "minicluster/cluster/heartbeat.py",
        "            if state.failures >= self._threshold:",
        "            if False:",
        "test_two_unreachable_heartbeats_in_a_row_lose_the_target",
    ),
    (
        "TE frees a rejected offer",
        "minicluster/cluster/taskexecutor.py",
        '                    self._free_slot(offer.allocation_id, "the JobMaster rejected the '
        'offer")',
        "                    pass",
        "test_the_task_executor_frees_a_slot_whose_offer_the_job_master_rejects",
    ),
    (
        "JM retries a failed declaration",
        "minicluster/cluster/jobmaster.py",
        '                    self._emit("slots", f"declaring {wanted} slots failed: {exc}; '
        'retrying")',
        "                    break",
        "test_the_job_master_retries_a_failed_declaration",
    ),
    (
        "JM acknowledges a duplicate registration",
        "minicluster/cluster/jobmaster.py",
        "            if known.session_id == session_id:\n"
        "                return RegistrationResponse(True)\n",
        "",
        "test_a_repeated_registration_of_the_same_session_is_acknowledged_and_changes_nothing",
    ),
    (
        "TE checks the JM token in submit_task",
        "minicluster/cluster/taskexecutor.py",
        "connection is None or connection.token != jm_token or not connection.registered",
        "connection is None or not connection.registered",
        "test_submit_task_with_a_stale_job_master_token_is_refused",
    ),
    (
        "RM checks the instance id in notify_slot_available",
        "minicluster/cluster/resourcemanager.py",
        "if record is None or record.instance_id != instance_id or slot is None:",
        "if record is None or slot is None:",
        "test_notify_slot_available_with_a_stale_instance_id_is_ignored",
    ),
    (
        "RM ignores an outdated registration",
        "minicluster/cluster/resourcemanager.py",
        "        if self._registering.get(resource_id) is not attempt:\n            # a later",
        "        if False:\n            # a later",
        "test_a_slow_earlier_registration_never_overwrites_a_newer_one",
    ),
    (
        "JM refuses a foreign job",
        "minicluster/cluster/jobmaster.py",
        "        if job_id != self.job_id:",
        "        if False:",
        "test_a_job_master_refuses_a_task_executor_registering_for_another_job",
    ),
    (
        "RM refuses a second live TaskExecutor under a taken id",
        "minicluster/cluster/resourcemanager.py",
        "            if alive and self.task_executors.get(resource_id) is old:",
        "            if False:",
        "test_a_second_live_task_executor_under_a_taken_id_is_rejected",
    ),
    (
        "TE resets the ResourceManager heartbeat timeout on each heartbeat",
        "minicluster/cluster/taskexecutor.py",
        "        self.rm_last_heartbeat = trio.current_time()\n"
        "        self._rm_heartbeat_timeout.reset()\n",
        "        self.rm_last_heartbeat = trio.current_time()\n",
        "test_heartbeats_keep_every_connection_alive_for_a_long_run",
    ),
    (
        "TE resets the JobMaster heartbeat timeout on each heartbeat",
        "minicluster/cluster/taskexecutor.py",
        "        connection.last_heartbeat = now\n"
        "        self._reset_jm_heartbeat_timeout(job_id, connection)\n",
        "        connection.last_heartbeat = now\n",
        "test_heartbeats_keep_every_connection_alive_for_a_long_run",
    ),
    (
        "TE notices a silent ResourceManager",
        "minicluster/cluster/taskexecutor.py",
        '        if self.registration_state != "registered":\n            return\n        timeout',
        "        return\n        timeout",
        "test_a_task_executor_notices_a_silent_resource_manager_exactly_at_the_timeout",
    ),
    (
        "JM notices a silent ResourceManager",
        "minicluster/cluster/jobmaster.py",
        "        if self.rm_gateway is not None:\n"
        '            self._emit("heartbeat", "heartbeat of',
        '        if False:\n            self._emit("heartbeat", "heartbeat of',
        "test_silent_job_masters_and_resource_managers_are_noticed_by_heartbeat",
    ),
]
sys.exit(
    run_deletions(M, ["tests/test_flink_behaviour.py", "tests/test_task_executor_identity.py"])
)
