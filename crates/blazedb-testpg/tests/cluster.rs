//! The harness itself: a real cluster starts, takes a password login over TCP, keeps
//! its data across a stop (as a crash would) and a start, and goes away when dropped.

use blazedb_testpg::Cluster;

async fn connect(c: &Cluster) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&c.conn_string("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect with the password");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test]
async fn a_throwaway_cluster_keeps_its_data_across_an_immediate_stop_and_start() {
    let mut c = Cluster::start().expect("a cluster starts");
    let client = connect(&c).await;
    client
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')",
        )
        .await
        .expect("write");
    drop(client);
    c.stop().expect("stop");
    assert!(
        tokio_postgres::connect(&c.conn_string("postgres"), tokio_postgres::NoTls)
            .await
            .is_err(),
        "stopped means stopped"
    );
    c.start_again().expect("start again");
    let client = connect(&c).await;
    let row = client
        .query_one("SELECT v FROM t WHERE k = 1", &[])
        .await
        .expect("read");
    assert_eq!(row.get::<_, String>(0), "one");
    let wrong = c.conn_string("postgres").replace(c.password(), "wrong");
    assert!(
        tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a wrong password is refused"
    );
}
