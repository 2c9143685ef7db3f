#!/usr/bin/env python3
"""Record RDS Query API answers from moto for the unit tests of the provider
plugin's parser and waiter (tests/unit/test_rds_wait.c).

    python3 tests/unit/data/rds/record.py      # rewrites the *.xml here

Every file is moto's answer byte for byte, except the status-* files:
moto makes instances and snapshots available at once, so the statuses a
real RDS passes through (creating, backing-up, incompatible-restore...)
are written into a recorded DescribeDBInstances answer by replacing the
text of its <DBInstanceStatus> element, and nothing else.
"""
import os
import subprocess
import sys
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'functional'))
from s3server import S3Server  # noqa: E402


def main():
    srv = S3Server().start()
    try:
        rds = srv._boto('rds', srv.key, srv.secret)
        for name in ('src-db', 'other-db'):
            rds.create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass='db.t3.micro',
                Engine='postgres', MasterUsername='drill',
                MasterUserPassword='not-a-real-one', AllocatedStorage=20,
                BackupRetentionPeriod=1)

        def q(params, secret=None):
            body = '&'.join(f'{k}={quote(str(v), safe="")}' for k, v in params.items())
            r = subprocess.run(
                ['curl', '-s', '--aws-sigv4', f'aws:amz:{srv.region}:rds',
                 '--user', f'{srv.key}:{secret or srv.secret}', '-H',
                 'Content-Type: application/x-www-form-urlencoded; charset=utf-8',
                 '--data', body, srv.endpoint + '/'],
                capture_output=True, check=True)
            return r.stdout

        def save(name, data):
            with open(os.path.join(HERE, name), 'wb') as f:
                f.write(data)

        v = {'Version': '2014-10-31'}
        one = q(dict(v, Action='DescribeDBInstances', DBInstanceIdentifier='src-db'))
        save('describe-instance.xml', one)
        save('create-snapshot.xml', q(dict(v, Action='CreateDBSnapshot',
                                           DBInstanceIdentifier='src-db',
                                           DBSnapshotIdentifier='snap-00')))
        for i in range(1, 25):
            q(dict(v, Action='CreateDBSnapshot', DBInstanceIdentifier='src-db',
                   DBSnapshotIdentifier=f'snap-{i:02d}'))
        # moto answers DescribeDBSnapshots in one page (no Marker); it pages
        # DescribeDBInstances, whose Marker the parser reads the same way
        save('describe-snapshots.xml',
             q(dict(v, Action='DescribeDBSnapshots', DBInstanceIdentifier='src-db')))
        for i in range(20):
            rds.create_db_instance(
                DBInstanceIdentifier=f'fleet-{i:02d}', DBInstanceClass='db.t3.micro',
                Engine='postgres', MasterUsername='drill',
                MasterUserPassword='not-a-real-one', AllocatedStorage=20)
        page = q(dict(v, Action='DescribeDBInstances', MaxRecords='20'))
        save('describe-instances-page1.xml', page)
        marker = page.split(b'<Marker>')[1].split(b'</Marker>')[0].decode()
        save('describe-instances-page2.xml',
             q(dict(v, Action='DescribeDBInstances', MaxRecords='20', Marker=marker)))
        save('restore-from-snapshot.xml',
             q(dict(v, Action='RestoreDBInstanceFromDBSnapshot',
                    DBInstanceIdentifier='drill-one', DBSnapshotIdentifier='snap-00')))
        save('restore-to-point-in-time.xml',
             q(dict(v, Action='RestoreDBInstanceToPointInTime',
                    SourceDBInstanceIdentifier='src-db',
                    TargetDBInstanceIdentifier='drill-two',
                    UseLatestRestorableTime='true')))
        save('delete-instance.xml', q(dict(v, Action='DeleteDBInstance',
                                           DBInstanceIdentifier='drill-one',
                                           SkipFinalSnapshot='true')))
        save('error-instance-not-found.xml',
             q(dict(v, Action='DescribeDBInstances', DBInstanceIdentifier='nope')))
        save('error-snapshot-exists.xml',
             q(dict(v, Action='CreateDBSnapshot', DBInstanceIdentifier='src-db',
                    DBSnapshotIdentifier='snap-00')))
        save('error-signature.xml',
             q(dict(v, Action='DescribeDBInstances'), secret='wrong'))
        for st in ('creating', 'backing-up', 'modifying', 'incompatible-restore',
                   'incompatible-parameters', 'failed', 'deleting'):
            a = one.split(b'<DBInstanceStatus>')[0]
            b = one.split(b'</DBInstanceStatus>')[1]
            save(f'status-{st}.xml',
                 a + b'<DBInstanceStatus>' + st.encode() + b'</DBInstanceStatus>' + b)
    finally:
        srv.stop()


if __name__ == '__main__':
    main()
